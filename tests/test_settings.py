import pytest

from pytest_mmperf.settings import OPTIONS, Settings, UsageError, resolve


def test_defaults():
    s = resolve({}, {}, {})
    assert s == Settings()
    assert s.device == "auto" and s.scale == "tiny" and s.threads == 1


def test_order_command_line_over_env_over_ini():
    ini = {"mmperf_scale": "small", "mmperf_rounds": "9", "mmperf_device": "cpu"}
    env = {"MMPERF_SCALE": "paper", "MMPERF_ROUNDS": "11"}
    cli = {"rounds": "13"}
    s = resolve(cli, ini, env)
    assert s.rounds == 13  # command line
    assert s.scale == "paper"  # environment over ini
    assert s.device == "cpu"  # ini over default


def test_marker_overrides_command_line():
    s = resolve({"rounds": "13", "threshold": "5%"}, {}, {})
    b = s.for_benchmark({"rounds": 21, "threshold": 0.1, "workload": "llm"})
    assert b.rounds == 21 and b.threshold == pytest.approx(0.1)
    assert s.rounds == 13  # the session's settings are untouched


@pytest.mark.parametrize(
    ("cli", "ini", "env", "needle"),
    [
        ({"device": "tpu"}, {}, {}, "--mmperf-device: 'tpu' is not allowed (must be one of auto, cpu, cuda)"),
        ({"scale": "huge"}, {}, {}, "--mmperf-scale: 'huge'"),
        ({}, {"mmperf_rounds": "x"}, {}, "ini key mmperf_rounds: 'x' is not allowed (must be a number)"),
        ({}, {}, {"MMPERF_THRESHOLD": "150%"}, "$MMPERF_THRESHOLD"),
        ({"history": "mysql://x"}, {}, {}, "--mmperf-history"),
        ({"shard": "3/2"}, {}, {}, "--mmperf-shard"),
        ({"rounds": "0"}, {}, {}, "positive integer"),
    ],
)
def test_bad_values_name_their_origin(cli, ini, env, needle):
    with pytest.raises(UsageError) as exc:
        resolve(cli, ini, env)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_marker_bad_value():
    with pytest.raises(UsageError, match="marker keyword rounds="):
        Settings().for_benchmark({"rounds": "many"})


def test_max_rounds_below_rounds_refused():
    with pytest.raises(UsageError, match="max_rounds"):
        resolve({"rounds": "10", "max_rounds": "5"}, {}, {})


def test_history_off_and_percentages():
    s = resolve({"history": "off", "threshold": "7.5%", "confidence": "99%"}, {}, {})
    assert s.history is None
    assert s.threshold == pytest.approx(0.075)
    assert s.confidence == pytest.approx(0.99)


def test_every_option_has_a_field_and_an_ini_key():
    names = set(Settings.__dataclass_fields__)
    for spec in OPTIONS:
        assert spec.dest in names
        assert spec.ini.startswith("mmperf")
        assert spec.flag.startswith("--mmperf")
