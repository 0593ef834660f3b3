"""The check scripts' report: one line per check, then "N passed, N failed"
(what the Rust tests look for), and exit status 1 on any failure or none run."""
import sys

results = []


def check(name, ok, detail=""):
    """Records one check and prints its line (with `detail` when it failed)."""
    ok = bool(ok)
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)


def finish():
    """Prints the summary and exits with the verdict."""
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) and results else 1)
