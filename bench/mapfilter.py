"""A map/filter/reduce chain with lambdas over 300,000 ints; twin of
bench/mapfilter.conc."""

import json
from functools import reduce


def main() -> None:
    xs = []
    for i in range(300000):
        xs.append(i)
    mapped = list(map(lambda x: x * 3 + 1, xs))
    kept = list(filter(lambda x: x % 2 == 0, mapped))
    total = reduce(lambda acc, x: acc + x % 1000, kept, 0)
    print(json.dumps(total))


if __name__ == "__main__":
    main()
