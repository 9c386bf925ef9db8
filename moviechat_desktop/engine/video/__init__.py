"""Video input: probe a film, plan its frames, decode and preprocess them."""
