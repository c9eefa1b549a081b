# Paths of every output, and which records each experiment's figure reads. Outputs live under
# <results>/<device>/<precision>/ (records, schedules, logs, benchmarks) and <results>/figures/<device>/<precision>/,
# so runs in different precisions never overwrite each other. The precision is a wildcard of every rule's paths
# (ROOT, FIGURES): an experiment runs in each of its `precisions` (the run's `precision` if it names none), with one
# figure and one `track` per precision.
import os
import yaml

PYTHON = sys.executable
# The package runs from this checkout, installed or not (braces doubled: shell commands are formatted).
shell.prefix("export PYTHONPATH=" + os.path.join(workflow.basedir, "src") + "${{PYTHONPATH:+:$PYTHONPATH}}; ")

DEVICE = config["device"]
_device_file = os.path.join(workflow.basedir, "src", "ios_core", "conf", "device", f"{DEVICE}.yaml")
if not os.path.exists(_device_file):
    raise ValueError(f"device={DEVICE!r}: no device profile {_device_file}")
with open(_device_file) as _f:
    REAL = bool((yaml.safe_load(_f) or {}).get("real", False))
HOME = DEVICE if REAL else config["sim_device"]  # the device profile a number is for
PRECISION = "{precision}"  # a rule's precision: its wildcard (params strings are formatted with the wildcards)
ROOT = f"{config['results']}/{DEVICE}/{PRECISION}"
FIGURES = f"{config['results']}/figures/{DEVICE}/{PRECISION}"
GPU = 1 if REAL else 0
# On a GPU, every job that touches it runs through a lock that gives it a GPU of its own.
ON_GPU = f"{PYTHON} -m ios_core.gpu_lock -- " if REAL else ""
SEARCH_COST = config["cost"] if config["cost"] != "auto" else ("measured" if REAL else "simulated")
if SEARCH_COST == "measured" and not REAL:
    raise ValueError(f"cost=measured needs a GPU device; device={DEVICE} is simulated")
# Schedules run with the cuDNN engines their stages were profiled with: autotuned when the search measured
# them (cost=measured autotunes), cuDNN's heuristic choice otherwise. Experiment 7 asks for both.
TUNING = "autotune" if SEARCH_COST == "measured" else "heuristic"
IOS = config["ios"]
EXP = config["experiments"]
PAPER = ("schedules", "frameworks", "utilization", "specialization", "pruning", "batch_sizes", "intra_inter")
# In the paper's order, numbered as there; `only` (a campaign) picks some of them.
EXPERIMENTS = [e for e in PAPER if e in EXP and (config["only"] is None or e in config["only"])]


def precisions(name):
    """The precisions experiment ``name`` runs in: its own `precisions`, else the run's `precision`."""
    return EXP[name].get("precisions") or [config["precision"]]


# Every precision some experiment runs in, in the order first named.
PRECISIONS = list(dict.fromkeys(p for name in EXPERIMENTS for p in precisions(name)))


wildcard_constraints:
    odev="[a-z0-9_]+",
    rdev="[a-z0-9_]+",
    model="[a-z0-9_]+",
    batch=r"\d+",
    run_batch=r"\d+",
    sched=r"sequential|greedy|(merge|parallel|both)_r\d+_s\d+",
    tuning="heuristic|autotune",
    framework="[a-z_]+",
    precision="[a-z0-9-]+",


def sched_name(opt, model, r=None, s=None):
    """A schedule's file name: the opt, and for IOS its pruning (the model's own, else the default)."""
    if opt in ("sequential", "greedy"):
        return opt
    limits = {**IOS, **IOS.get("models", {}).get(model, {})}
    return f"{opt}_r{r or limits['r']}_s{s or limits['s']}"


def ios(model):
    return sched_name(IOS["opt"], model)


# The paths below keep ``{precision}`` where no precision is given: a rule's input then takes its output's.


def at(path, precision=None):
    """``path`` in ``precision``; None leaves the wildcard."""
    return path if precision is None else path.replace(PRECISION, precision, 1)


def schedule(model, batch, sched, odev=HOME, precision=None):
    return at(f"{ROOT}/schedules/{odev}/{model}/b{batch}/{sched}.json", precision)


def stage_log(schedule_path):
    """Where the search that writes a schedule logs the stages it costs (see ios_core.tracking.adapters)."""
    return schedule_path.removesuffix(".json") + ".stages.jsonl"


def measured(model, batch, sched, odev=HOME, rdev=None, run_batch=None, tuning=TUNING):
    return f"{ROOT}/measure/{odev}/{model}/b{batch}/{sched}/on_{rdev or odev}_b{run_batch or batch}_{tuning}.json"


def warps(model, batch, sched):
    """The active-warps record of a schedule on this run's device (Nsight Compute; not available simulated)."""
    return f"{ROOT}/warps/{HOME}/{model}/b{batch}/{sched}.json"


def baseline(model, batch, framework, rdev=HOME):
    return f"{ROOT}/baselines/{rdev}/{model}/b{batch}/{framework}.json"


def figure(name, ext="png", precision=None):
    return at(f"{FIGURES}/{name}.{ext}", precision)


def final_outputs():
    """What `all` asks for: every experiment's figure files in each of its precisions, and each precision's
    MLflow summary."""
    figures = [figure(n, ext, p) for n in EXPERIMENTS for p in precisions(n) for ext in ("png", "pdf", "csv")]
    return figures + [at(f"{ROOT}/mlflow.json", p) for p in PRECISIONS]


def gpu_resources(device_wildcard):
    """``gpu=1`` for a job on a GPU; with cross_device, also the GPU model it needs (SLURM: --gpus=<model>:1)."""
    if REAL and config["cross_device"]:
        return {"gpu": GPU, "gpu_model": lambda wildcards: getattr(wildcards, device_wildcard)}
    return {"gpu": GPU}


def unavailable(wildcards):
    """Why a cell of experiment 4 cannot be measured on this node, or None."""
    if REAL and not config["cross_device"]:
        for dev in (wildcards.odev, wildcards.rdev):
            if dev != DEVICE:
                return f"needs a GPU matching device={dev}: rerun with cross_device=true where there is one"
    return None


RECORDS = {
    "schedules": lambda e: [measured(m, e["batch"], sched_name(o, m)) for m in e["models"] for o in e["opts"]],
    "frameworks": lambda e: [measured(m, e["batch"], ios(m)) for m in e["models"]]
    + [baseline(m, e["batch"], f) for m in e["models"] for f in e["frameworks"]],
    "utilization": lambda e: [measured(e["model"], e["batch"], s) for s in ("sequential", ios(e["model"]))]
    + [warps(e["model"], e["batch"], s) for s in ("sequential", ios(e["model"]))],
    "specialization": lambda e: [
        measured(e["model"], b, ios(e["model"]), run_batch=rb) for b in e["batches"] for rb in e["batches"]
    ]
    + [
        measured(e["model"], e["device_batch"], ios(e["model"]), odev=od, rdev=rd)
        for od in e["devices"]
        for rd in e["devices"]
    ],
    "pruning": lambda e: [
        measured(m, e["batch"], sched_name(IOS["opt"], m, r, s)) for m in e["models"] for r in e["r"] for s in e["s"]
    ],
    "batch_sizes": lambda e: [measured(e["model"], b, s) for b in e["batches"] for s in ("sequential", ios(e["model"]))]
    + [baseline(e["model"], b, f) for b in e["batches"] for f in e["frameworks"]],
    "intra_inter": lambda e: [
        measured(m, e["batch"], s, tuning=t)
        for m in e["models"]
        for s in ("sequential", ios(m))
        for t in ("heuristic", "autotune")
    ],
}


def records(name, precision=None):
    """The record files experiment ``name``'s figure reads, each once, in a stable order, in ``precision`` (None:
    the wildcard, as the figure's rule reads them)."""
    return list(dict.fromkeys(at(path, precision) for path in RECORDS[name](EXP[name])))


def track_input(wildcards):
    """What `track` ingests in one precision: the records and figures of the experiments run in it."""
    names = [name for name in EXPERIMENTS if wildcards.precision in precisions(name)]
    paths = [path for name in names for path in records(name, wildcards.precision)]
    return list(dict.fromkeys(paths)) + [at(f"{ROOT}/figures/{name}.json", wildcards.precision) for name in names]


def search_overrides(sched):
    """Hydra overrides of ios_core.optimize for a schedule name: "sequential", "both_r3_s8", ..."""
    opt, *limits = sched.split("_")
    return f"opt={opt}" + "".join(f" {limit[0]}={limit[1:]}" for limit in limits)


def measure_input(wildcards):
    if unavailable(wildcards):
        return {}
    return {"schedule": schedule(wildcards.model, wildcards.batch, wildcards.sched, wildcards.odev,
                                 wildcards.precision)}


def measure_overrides(wildcards):
    """Overrides beyond the obvious ones: why a cell is unavailable, and what it would have measured."""
    reason = unavailable(wildcards)
    if reason is None:
        return "" if REAL else "mode=simulated"
    opt, *limits = wildcards.sched.split("_")
    described = [f"opt={opt}", f"schedule_batch={wildcards.batch}", f"schedule_device={wildcards.odev}"]
    described += [f"{limit[0]}={limit[1:]}" for limit in limits]
    return f"'unavailable=\"{reason}\"' " + " ".join(f"+schedule_params.{d}" for d in described)


def figure_rule_outputs(name):
    return {
        "png": report(figure(name, "png"), caption=f"../report/{name}.rst", category="Figures",
                      subcategory=f"{PAPER.index(name) + 1}. {name}", labels={"experiment": name}),
        "pdf": figure(name, "pdf"),
        "record": f"{ROOT}/figures/{name}.json",
        "csv": report(figure(name, "csv"), caption=f"../report/{name}.rst", category="Data",
                      labels={"experiment": name}),
    }
