"""`harness report`: suite runs read back from MLflow (`runs`), the numbers and verdicts (`table`),
the figures (`plots`), markdown text (`markdown`), the study section (`study`), the command (`render`)."""
