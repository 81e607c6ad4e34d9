"""`python -m demo [options]`: the same as `collections demo [options]`."""
import sys

from cli.main import main

main(["demo", *sys.argv[1:]])
