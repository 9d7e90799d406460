"""The monitor's pure parts: the hysteresis state machine and maintenance file names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from saru.monitor import Change, HealthState, force_down, in_maintenance, maintenance_names, step


def run(results: str, failurecount: int = 1, rise: int = 1, state: HealthState | None = None) -> list[str]:
    """Feed a sequence like "+--+" (pass/fail) through step(); the changes as short names."""
    state = state or HealthState()
    changes = []
    for ch in results:
        state, change = step(state, ch == "+", failurecount, rise)
        changes.append(change.value)
    return changes


def test_first_verdict_is_taken_immediately_without_hysteresis():
    assert run("+", failurecount=3, rise=3) == ["up"]
    assert run("-", failurecount=3, rise=3) == ["down"]


def test_failurecount_one_goes_down_on_the_first_failure():
    assert run("+-") == ["up", "down"]


def test_failurecount_soft_failures_then_down():
    assert run("+---", failurecount=3) == ["up", "soft_failure", "soft_failure", "down"]


def test_soft_failure_counts_are_reported():
    state, _ = step(HealthState(up=True), False, failurecount=3)
    assert state == HealthState(up=True, failures=1)
    state, change = step(state, False, failurecount=3)
    assert (state.failures, change) == (2, Change.SOFT_FAILURE)


def test_success_after_soft_failures_resets():
    assert run("+--+---", failurecount=3) == [
        "up", "soft_failure", "soft_failure", "failures_reset", "soft_failure", "soft_failure", "down"]


def test_failures_are_only_counted_while_up():
    assert run("----", failurecount=2) == ["down", "none", "none", "none"]


def test_recovery_is_immediate_by_default():
    assert run("-+", failurecount=5) == ["down", "up"]


def test_rise_needs_consecutive_successes():
    assert run("-++", rise=2) == ["down", "none", "up"]
    assert run("-+-++", rise=2) == ["down", "none", "none", "none", "up"]
    state, _ = step(HealthState(up=False), True, rise=3)
    assert state == HealthState(up=False, successes=1)


def test_force_down_bypasses_failurecount():
    assert force_down(HealthState(up=True, failures=1)) == (HealthState(up=False), Change.DOWN)
    assert force_down(HealthState()) == (HealthState(up=False), Change.DOWN)
    assert force_down(HealthState(up=False, successes=2)) == (HealthState(up=False), Change.NONE)


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_step_matches_a_reference_model(results, failurecount, rise):
    """Down only after failurecount consecutive failures while up; up after rise successes while down."""
    state = HealthState()
    up: bool | None = None
    run_length = 0  # consecutive results opposite to the current verdict
    for ok in results:
        state, change = step(state, ok, failurecount, rise)
        if up is None:
            up, run_length = ok, 0
            assert change is (Change.UP if ok else Change.DOWN)
            continue
        run_length = 0 if ok == up else run_length + 1
        flipped = run_length >= (failurecount if up else rise)
        if flipped:
            up, run_length = not up, 0
            assert change is (Change.UP if up else Change.DOWN)
        else:
            assert change not in (Change.UP, Change.DOWN)
        assert state.up is up
        assert state.failures == (run_length if up else 0)
        assert state.successes == (0 if up else run_length)


def test_maintenance_names_ipv4():
    assert maintenance_names("10.0.0.5", 80) == ["10.0.0.5:80", "10.0.0.5"]


def test_maintenance_names_with_fqdn_and_short_name():
    assert maintenance_names("172.16.1.2", 4444, "realserver2.example.com") == [
        "172.16.1.2:4444", "172.16.1.2", "realserver2.example.com:4444", "realserver2.example.com",
        "realserver2:4444", "realserver2"]


def test_maintenance_names_without_domain_have_no_short_form():
    assert maintenance_names("127.0.0.1", 80, "localhost") == [
        "127.0.0.1:80", "127.0.0.1", "localhost:80", "localhost"]


def test_maintenance_names_ipv6_in_brackets():
    assert maintenance_names("2001:db8::5", 443) == ["[2001:db8::5]:443", "[2001:db8::5]"]


class FakeNames:
    """Stands in for NameCache: a fixed reverse name, and a count of lookups."""

    def __init__(self, name: str | None) -> None:
        self.name, self.calls = name, 0

    async def lookup(self, address: str) -> str | None:
        self.calls += 1
        return self.name


async def test_in_maintenance_looks_names_up_only_when_they_could_matter(tmp_path):
    names = FakeNames("web1.example.com")
    directory = str(tmp_path)
    assert not await in_maintenance(directory, "10.0.0.5", 80, names)  # type: ignore[arg-type]
    (tmp_path / "10.0.0.9").touch()
    (tmp_path / "[2001:db8::1]:80").touch()
    assert not await in_maintenance(directory, "10.0.0.5", 80, names)  # type: ignore[arg-type]
    assert names.calls == 0  # only address-named files: no reverse lookup
    assert await in_maintenance(directory, "2001:db8::1", 80, names)  # type: ignore[arg-type]
    (tmp_path / "web1:80").touch()
    assert await in_maintenance(directory, "10.0.0.5", 80, names)  # type: ignore[arg-type]
    assert not await in_maintenance(directory, "10.0.0.5", 81, names)  # type: ignore[arg-type]
    assert names.calls == 2
    assert not await in_maintenance(str(tmp_path / "missing"), "10.0.0.5", 80, names)  # type: ignore[arg-type]
