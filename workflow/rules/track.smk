# Log every record of this run into MLflow -- measurements, failed attempts (*.failed.json), searches (schedule
# files and their stage logs) and figures (with the PNG, PDF and CSV as artifacts) -- once: ingestion skips what the
# store already holds, so rerunning it after new results, or after a crash halfway, never duplicates a measurement.
# One per precision, of the experiments run in it.


rule track:
    input:
        track_input,
    output:
        f"{ROOT}/mlflow.json",
    log:
        f"{ROOT}/logs/track.log",
    resources:
        runtime=20,  # minutes: a campaign's store takes every record once
        mem_mb=2000,
    params:
        run=f"{PYTHON} -m ios_core.tracking",
        results=ROOT,
        uri=f"--uri {config['tracking']['uri']}" if config["tracking"]["uri"] else "",
        experiment=config["tracking"]["experiment"],
    shell:
        "{params.run} ingest {params.results} {params.uri} --experiment {params.experiment}"
        " --summary {output} > {log} 2>&1"
