"""Shared by the side-by-side benchmark scripts: free ports, and replacing one
marked section of BENCHMARKS.md."""
import pathlib
import socket

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section(name, stamp, body):
    """The text of section `name`, between its begin and end markers."""
    return "<!-- %s:begin -->\nMeasured %s.\n\n%s\n<!-- %s:end -->" % (
        name, stamp, body, name)


def write_section(name, text):
    """Replaces section `name` of BENCHMARKS.md with `text` (appends it when
    the markers are missing)."""
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text() if path.exists() else ""
    begin, end = "<!-- %s:begin -->" % name, "<!-- %s:end -->" % name
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + text + rest.split(end, 1)[1]
    else:
        content += "\n" + text + "\n"
    path.write_text(content)
