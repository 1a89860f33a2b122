"""Importing dbcore (and the vector-store modules) loads neither chromadb nor pinecone."""

from __future__ import annotations

import subprocess
import sys


def test_import_dbcore_loads_no_vector_sdk() -> None:
    code = (
        "import sys, dbcore\n"
        "assert 'chromadb' not in sys.modules and 'pinecone' not in sys.modules\n"
        "import dbcore.vectorstores, dbcore.vectorstores.chroma, dbcore.vectorstores.pinecone\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('chromadb', 'pinecone'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
