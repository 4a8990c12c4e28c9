"""`python -m bench.factworld`."""

from bench.factworld.run import main

main()
