"""`ep_fine_tune.py` that also records which files this process writes under `--output_dir`.

For tests/test_distributed.py, launched by torchrun: each process appends one JSON line per file
it opens for writing or renames into place (atomic writes) to `$AUDIT_DIR/rank-$RANK.jsonl`.
Writes made in native code (safetensors, torch.save) are not seen; ours all end in a rename.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_audit(output_dir: str, log_path: str) -> None:
    output_dir = os.path.abspath(output_dir)

    def writes_under_output(path: object) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(output_dir)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and writes_under_output(args[0]):
            mode, flags = args[1], args[2]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
            if writing:
                record(args[0])
        elif event == "os.rename" and writes_under_output(args[1]):
            record(args[1])

    def record(path: object) -> None:
        # Opening the log raises an "open" event too; it lies outside output_dir.
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(os.path.relpath(os.fsdecode(path), output_dir)) + "\n")

    sys.addaudithook(hook)


if __name__ == "__main__":
    config = sys.argv[sys.argv.index("--json_file") + 1]
    with open(config, encoding="utf-8") as handle:
        output_dir = json.load(handle)["output_dir"]
    install_audit(output_dir, os.path.join(os.environ["AUDIT_DIR"], f"rank-{os.environ.get('RANK', '0')}.jsonl"))
    sys.argv[0] = os.path.join(ROOT, "ep_fine_tune.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
