"""The MovieChat model: frame encoder, video Q-Former, Vicuna decoder, weights mapping."""
