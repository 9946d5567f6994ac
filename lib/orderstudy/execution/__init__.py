"""Running a study: in process or on Ray, the notebooks through papermill, the checks before a run."""
