"""Fit a classifier to a folder of images (one sub-folder per class), then use it.

  python examples/fit_folder.py my_icons runs/mine a.png b.png

No ``if __name__ == "__main__":`` guard is needed: ``illustration_tl.fit`` decodes
images in this process and searches with threads.
"""

import sys

import illustration_tl

folder, run = sys.argv[1], sys.argv[2]
clf = illustration_tl.fit(folder, output=run)   # resumes if `run` is an earlier fit
clf = illustration_tl.load(run)                   # later, in another process
names, probabilities = clf.predict(sys.argv[3:] or [])
for path, name, p in zip(sys.argv[3:], names, probabilities):
    print(f"{path}: {name} ({100 * p.max():.1f}%)")
