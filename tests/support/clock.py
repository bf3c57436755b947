"""A clock the test moves by hand (collectors take `clock` as a constructor argument)."""


class ManualClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
