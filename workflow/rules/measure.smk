# Measure one schedule on one device at one batch size: simulated (analytical model) without a GPU, else timed by
# the engine. Records are written only (tracking.mlflow=false); the `track` rule ingests them all at the end.


rule measure:
    input:
        unpack(measure_input),
    output:
        f"{ROOT}/measure/{{odev}}/{{model}}/b{{batch}}/{{sched}}/on_{{rdev}}_b{{run_batch}}_{{tuning}}.json",
    log:
        f"{ROOT}/logs/measure/{{odev}}/{{model}}/b{{batch}}/{{sched}}/on_{{rdev}}_b{{run_batch}}_{{tuning}}.log",
    benchmark:
        f"{ROOT}/benchmarks/measure/{{odev}}/{{model}}/b{{batch}}/{{sched}}/on_{{rdev}}_b{{run_batch}}_{{tuning}}.tsv"
    params:
        run=f"{ON_GPU}{PYTHON} -m ios_core.measure",
        schedule=lambda wc, input: f"schedule={input.schedule}" if "schedule" in input.keys() else "",
        extra=measure_overrides,
        precision=PRECISION,
        autotune=lambda wc: f"autotune={str(wc.tuning == 'autotune').lower()}",
        timing=f"timing.warmup={config['timing']['warmup']} timing.number={config['timing']['number']}"
        f" timing.repeat={config['timing']['repeat']}",
    resources:
        **gpu_resources("rdev"),
        runtime=30 if REAL else 10,
        mem_mb=16000 if REAL else 2000,
    shell:
        "{params.run} model={wildcards.model} batch={wildcards.run_batch}"
        " device={wildcards.rdev} precision={params.precision} {params.schedule} {params.autotune} {params.timing}"
        " {params.extra} out={output} tracking.mlflow=false > {log} 2>&1"


# Experiment 3's active warps per kernel: Nsight Compute on the GPU (python -m ios_core.profiling.warps, counters read
# with --clock-control none); simulated, a record that says why there are none.
rule warps:
    input:
        unpack(lambda wc: {"schedule": schedule(wc.model, wc.batch, wc.sched, HOME, wc.precision)} if REAL else {}),
    output:
        f"{ROOT}/warps/{{odev}}/{{model}}/b{{batch}}/{{sched}}.json",
    log:
        f"{ROOT}/logs/warps/{{odev}}/{{model}}/b{{batch}}/{{sched}}.log",
    benchmark:
        f"{ROOT}/benchmarks/warps/{{odev}}/{{model}}/b{{batch}}/{{sched}}.tsv"
    params:
        run=f"{ON_GPU}{PYTHON} -m ios_core.profiling.warps profile",
        schedule=lambda wc, input: input.schedule if REAL else wc.sched,
        opt=lambda wc: wc.sched.split("_")[0],
        unavailable="" if REAL else "--unavailable 'simulated cost model; needs ncu on a GPU'",
        precision=PRECISION,
    resources:
        **gpu_resources("odev"),
        runtime=30 if REAL else 10,
        mem_mb=16000 if REAL else 2000,
    shell:
        "{params.run} --model {wildcards.model} --batch {wildcards.batch} --precision {params.precision}"
        " --schedule {params.schedule} --opt {params.opt} --device {wildcards.odev} {params.unavailable}"
        " --out {output} > {log} 2>&1"
