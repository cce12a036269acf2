"""Pack a FER2013-layout CSV into a small lossless ``.npz.xz`` file.

Every fer_keras ``--csv`` option reads the packed file like the CSV. Use it to
carry the data to a machine that receives only a size-capped copy of the repo
(FER2013 Training + PublicTest: 85 MB gzipped CSV → about 54 MB packed).

    python preprocess/pack_dataset.py ../shared/data/fer2013/fer2013_train_publictest.csv.gz .gpu/fer2013.npz.xz
"""

import argparse
import sys
from pathlib import Path

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    from fer_keras import data
    from fer_keras.cli.common import run_cli
    from fer_keras.errors import FerError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="FER2013-layout CSV (.csv or .csv.gz)")
    parser.add_argument("out", help=f"packed file to write (name ends in {data.PACKED_SUFFIX})")
    args = parser.parse_args(argv)

    def job():
        out = Path(args.out)
        if not out.name.endswith(data.PACKED_SUFFIX):
            raise FerError(f"{out}: the packed file's name must end in {data.PACKED_SUFFIX}")
        if out.exists():
            raise FerError(f"{out} exists: delete it first or choose another name")
        dataset = data.load_fer2013(args.csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        data.save_packed(dataset, out)
        print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({dataset.summary()})")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
