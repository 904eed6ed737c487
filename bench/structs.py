"""Build 100,000 objects with string fields; twin of bench/structs.conc."""

import json
from dataclasses import dataclass


@dataclass(slots=True)
class Person:
    name: str
    city: str
    age: int


def main() -> None:
    cities = ["Oslo", "Lima", "Pune", "Kyiv", "Nara", "Cork", "Baku"]
    people = []
    for i in range(100000):
        people.append(Person(name=f"p{i}", city=cities[i % 7], age=i % 90))
    checksum = 0
    for p in people:
        checksum += len(p.name) * 3 + len(p.city) + p.age
    print(json.dumps([len(people), checksum]))


if __name__ == "__main__":
    main()
