"""`harness suite run`: a suite file (`file`), its cells and the dry-run estimate (`planning`), the
work queue (`queue`), racing (`racing`), each row's parent run (`parents`), the run loop (`runner`)."""
