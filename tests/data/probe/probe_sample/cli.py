"""A tiny management command for the command tests: ``python -m probe_sample.cli ready|warn|crash``."""

import sys


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "ready"
    if mode == "ready":
        print("status: ready")
        return 0
    if mode == "warn":
        print("status: ready")
        print("WARNING: legacy settings file found", file=sys.stderr)
        return 0
    if mode == "crash":
        raise RuntimeError("migrations are not applied")
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
