"""A Python prelude for server processes in tests: an audit hook refuses every open or
listing under the face folder (``sys.argv[1]``) before anything else is imported, and checks
that it does."""

import textwrap

FACE_GUARD = textwrap.dedent(
    """
    import os, sys
    face_root = os.path.realpath(sys.argv[1])
    def guard(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path == face_root or path.startswith(face_root + os.sep):
                raise PermissionError(f"the FR server may not read {path}")
    sys.addaudithook(guard)
    try:
        open(os.path.join(face_root, "s01", "1.pgm"), "rb")  # refused before the file is looked up
        raise SystemExit("the guard did not stop a face read")
    except PermissionError:
        pass
    """
)
