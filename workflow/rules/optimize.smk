# Search one schedule: the same command a user runs by hand. On a GPU node the stage costs are measured
# (cost=measured); without one, simulated. Every stage costed is logged beside the schedule
# (<schedule>.stages.jsonl, the cost's disk cache), which `track` logs into MLflow with the search. On a GPU the log
# is kept between attempts, so a search killed midway resumes without measuring a stage twice; simulated, it is
# started afresh, so the search time recorded is that of a whole search.


rule optimize:
    output:
        f"{ROOT}/schedules/{{odev}}/{{model}}/b{{batch}}/{{sched}}.json",
    log:
        f"{ROOT}/logs/optimize/{{odev}}/{{model}}/b{{batch}}/{{sched}}.log",
    benchmark:
        f"{ROOT}/benchmarks/optimize/{{odev}}/{{model}}/b{{batch}}/{{sched}}.tsv"
    params:
        run=f"{ON_GPU}{PYTHON} -m ios_core.optimize",
        precision=PRECISION,
        search=lambda wc: search_overrides(wc.sched),
        cost=f"cost={SEARCH_COST}",
        stages=lambda wc, output: stage_log(output[0]),
        fresh=lambda wc, output: "" if REAL else f"rm -f {stage_log(output[0])}; ",
    resources:
        **gpu_resources("odev"),
        runtime=60 if REAL else 30,  # minutes: a measured batch-128 search profiles thousands of stages
        mem_mb=16000 if REAL else 2000,  # CUDA, cuDNN and PyTorch on a GPU; numpy alone when simulated
    shell:
        "{params.fresh}"
        "{params.run} model={wildcards.model} batch={wildcards.batch} device={wildcards.odev}"
        " precision={params.precision} {params.search} {params.cost} cost.cache={params.stages} output={output}"
        " progress=false tracking.mlflow=false > {log} 2>&1"
