"""HTTP resources: one module per resource, and the one place domain errors become HTTP errors."""
