"""Make lib_multipass/data/clip_merges.txt.gz from CLIP's bpe_simple_vocab_16e6.txt.gz.

The source file ships in the open-clip-torch wheel (open_clip/bpe_simple_vocab_16e6.txt.gz):

    pip download --no-deps -d /tmp/oc open-clip-torch
    unzip -o /tmp/oc/*.whl 'open_clip/bpe_simple_vocab_16e6.txt.gz' -d /tmp/oc
    python tools/make_clip_merges.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz

CLIP's tokenizer reads the merges on lines 2 to 48,895 (49,152 tokens less 256 bytes, 256 bytes
ending a word and 2 special tokens); only those are kept.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

MERGES = 49152 - 256 - 2  # CLIP's vocabulary is 49,408: bytes, bytes</w>, merges, 2 special
OUT = Path(__file__).resolve().parent.parent / "lib_multipass" / "data" / "clip_merges.txt.gz"


def main(source: str) -> None:
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : MERGES + 1]
    if len(merges) != MERGES or any(len(m.split()) != 2 for m in merges):
        raise SystemExit(f"{source}: not CLIP's BPE file ({len(merges)} merges)")
    data = ("\n".join(merges) + "\n").encode("utf-8")
    OUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(merges):,} merges)")


if __name__ == "__main__":
    main(sys.argv[1])
