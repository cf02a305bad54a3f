import sys

try:
    from lth_core.cli import main
except KeyboardInterrupt:  # Ctrl-C while importing: one line, as in main
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
