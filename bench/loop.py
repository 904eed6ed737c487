"""A 3,000,000-step arithmetic while loop; twin of bench/loop.conc."""

import json


def main() -> None:
    i = 0
    acc = 0
    while i < 3000000:
        acc += (i * 7 + 3) % 11
        i += 1
    print(json.dumps(acc))


if __name__ == "__main__":
    main()
