# Time one framework baseline (ios_core.baseline). Without a GPU every baseline is recorded as not available,
# with the reason: they are measured, never simulated.


rule baseline:
    output:
        f"{ROOT}/baselines/{{rdev}}/{{model}}/b{{batch}}/{{framework}}.json",
    log:
        f"{ROOT}/logs/baselines/{{rdev}}/{{model}}/b{{batch}}/{{framework}}.log",
    benchmark:
        f"{ROOT}/benchmarks/baselines/{{rdev}}/{{model}}/b{{batch}}/{{framework}}.tsv"
    params:
        run=f"{ON_GPU}{PYTHON} -m ios_core.baseline",
        device=lambda wc: wc.rdev if REAL else DEVICE,
        timing=f"timing.warmup={config['timing']['warmup']} timing.number={config['timing']['number']}"
        f" timing.repeat={config['timing']['repeat']}",
        precision=PRECISION,
    resources:
        **gpu_resources("rdev"),
        runtime=30 if REAL else 10,
        mem_mb=16000 if REAL else 2000,
    shell:
        "{params.run} framework={wildcards.framework} model={wildcards.model}"
        " batch={wildcards.batch} device={params.device} precision={params.precision} {params.timing}"
        " out={output} tracking.mlflow=false > {log} 2>&1"
