"""TFDS dataset builders of illustration-tl."""
