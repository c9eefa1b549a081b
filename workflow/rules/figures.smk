# One figure per experiment of the IOS paper: PNG (in the report, with its caption), PDF, and the CSV of its numbers.


for _name in EXPERIMENTS:

    rule:
        name:
            f"figure_{_name}"
        input:
            records(_name),
        output:
            **figure_rule_outputs(_name),
        log:
            f"{ROOT}/logs/figures/{_name}.log",
        resources:
            runtime=10,
            mem_mb=2000,
        params:
            run=f"{PYTHON} -m ios_core.figures",
            name=_name,
            prefix=lambda wildcards, output: output.png.removesuffix(".png"),
            options=f"--set device_batch={EXP[_name]['device_batch']}" if _name == "specialization" else "",
        shell:
            "{params.run} {params.name} --out {params.prefix} --record {output.record} {params.options}"
            " {input} > {log} 2>&1"
