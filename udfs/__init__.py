"""pandas UDFs and the model code they run. Nothing here creates a SparkSession."""
