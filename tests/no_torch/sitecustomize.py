"""Put on PYTHONPATH by tests (pipeline_utils.snakemake(refuse_torch=True)): any import of torch in
that Python process fails, and leaves a line naming the importer on stderr, even if the importer
catches the ImportError."""

import sys
import traceback

REFUSED = ("torch",)
MARKER = "no_torch: refused import of"


class RefuseTorch:
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in REFUSED:
            importer = "".join(traceback.format_stack(limit=12)[:-1])
            sys.stderr.write(f"{MARKER} {fullname}\n{importer}\n")
            raise ImportError(f"{MARKER} {fullname} (a torch-free process)")
        return None


sys.meta_path.insert(0, RefuseTorch())
