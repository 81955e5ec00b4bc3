"""Running an entry script so that bad input ends in one clear line, not a stack trace."""
import logging
import sys

from src.errors import InputError


def setup_logging():
    """Log INFO lines with a timestamp to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")


def run_main(main):
    """Call ``main()``; an InputError prints 'error: <message>' and exits with status 1."""
    setup_logging()
    try:
        main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
