"""Naive recursive Fibonacci; twin of bench/fib.conc."""

import json


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main() -> None:
    print(json.dumps(fib(27)))


if __name__ == "__main__":
    main()
