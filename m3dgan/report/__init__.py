"""Visual output: image grids for TensorBoard and sample folders."""
