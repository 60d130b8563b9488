"""``python -m pipeline.evaluate checkpoint=FILE data.root=DIR data.labels=FILE data.name=NAME``."""

from pipeline.evaluate.run import main

if __name__ == "__main__":
    main()
