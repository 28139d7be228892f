# Hessian spectrum of each task's trained L1 model: SLQ always, the exact spectrum for small models
# (src/prunelimit/hessian.py).
import torch

from prunelimit.data import dataset_shape
from prunelimit.models import build_model, count_parameters, count_prunable


def hessian_dim(task):
    """D of the task's Hessian (prunable weights or all parameters, as config hessian.params says)."""
    entry = config["tasks"][task]
    in_shape, classes = dataset_shape(
        entry["dataset"], config["datasets"].get(entry["dataset"], {})
    )
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(
            entry["model"], in_shape, classes, **entry.get("model_args", {})
        )
    all_params = hessian_settings(task).get("params", "prunable") == "all"
    return count_parameters(model) if all_params else count_prunable(model)


_EXACT_TASKS = [
    t for t in TASKS if hessian_dim(t) <= config["hessian"]["exact_max_params"]
]


def exact_tasks():
    """Tasks small enough (D ≤ hessian.exact_max_params) for the dense exact spectrum."""
    return _EXACT_TASKS


def spectrum_settings(task, keys=None):
    """The task's hessian settings an output depends on (so others do not trigger reruns)."""
    settings = hessian_settings(task)
    keys = keys or [k for k in settings if k != "exact_max_params"]
    return {k: settings[k] for k in keys if k in settings}


rule slq:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        slq=f"{RESULTS}/hessian/{{task}}/slq.npz",
        plot=report(
            f"{RESULTS}/hessian/{{task}}/spectrum.png",
            caption="../report/hessian_spectrum.rst",
            category="Hessian spectrum",
            subcategory="{task}",
        ),
    log:
        f"{RESULTS}/logs/hessian/{{task}}_slq.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian/{{task}}_slq.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        hessian=lambda w: spectrum_settings(w.task),
        device=config.get("device", "auto"),
    script:
        "../../scripts/slq.py"


rule exact_spectrum:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        f"{RESULTS}/hessian/{{task}}/exact.npz",
    log:
        f"{RESULTS}/logs/hessian/{{task}}_exact.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian/{{task}}_exact.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        hessian=lambda w: spectrum_settings(w.task, ["params", "chunk_size"]),
        device=config.get("device", "auto"),
    script:
        "../../scripts/exact_spectrum.py"


FINAL_OUTPUTS += expand(f"{RESULTS}/hessian/{{task}}/slq.npz", task=TASKS)
FINAL_OUTPUTS += expand(f"{RESULTS}/hessian/{{task}}/exact.npz", task=exact_tasks())
