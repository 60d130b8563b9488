"""``python -m pipeline.evaluate checkpoint=FILE data.root=DIR data.labels=FILE data.name=NAME``."""

from pipeline.apply.cli import stage_main

main = stage_main(
    "evaluate",
    "pipeline.evaluate.run:evaluate",
    errors=("pipeline.evaluate.errors:EvaluationError",),
)

if __name__ == "__main__":
    from pipeline.utils.command import run_command

    run_command(main)
