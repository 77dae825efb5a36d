"""``python -m online_em``: the ``online-em`` command."""

from .cli import main

if __name__ == "__main__":  # pragma: no branch
    main()
