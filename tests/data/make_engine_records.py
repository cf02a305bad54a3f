"""tests/data/engine_records.json: tiny searches through each engine, fingerprinted as
``test_engines_agree.fingerprint`` does, with the API of commit 2c1e0f1 (before the engines
shared ``engine/stage.py``). Run from a checkout of that commit:
``PYTHONPATH=. python tests/data/make_engine_records.py OUT.json``."""

import json
import socket
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/
from test_engines_agree import SPEC, config, engines  # noqa: E402

from lth_core.engine.search import ticket_search  # noqa: E402
from lth_core.models import build  # noqa: E402


def main(out: str) -> None:
    from lth_core.provenance import cpu_model

    res = {"host": socket.gethostname(), "cpu": cpu_model(), "torch": torch.__version__,
           "engines": {}}
    for arch in ("lenet5", "resnet32"):
        def search(data, root, workers=None, ray=None, arch=arch, **engine):
            if workers:  # the API of 2c1e0f1
                from lth_core.engine.workers import search_in_workers

                search_in_workers(arch, SPEC, config(), runs=range(2), results=root,
                                  workers=workers)
            elif ray:
                from lth_core.engine.ray_search import search_on_ray

                search_on_ray(arch, data, config(), runs=2, results=root, **engine)
            else:
                ticket_search(lambda: build(arch), data, config(), name=arch, runs=2,
                              results=root, progress=False, **engine)

        with tempfile.TemporaryDirectory() as tmp:
            res["engines"].update(engines(Path(tmp), arch, search))
    Path(out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
