"""Profiles and parameters: merge order, validation, and the errors a researcher will meet."""
import pytest

from vlbridge.book import config
from vlbridge.book.config import ConfigError


def write_profile(project, name, text):
    (project / "params" / f"{name}.yaml").write_text(text)


def test_every_shipped_profile_validates_for_every_chapter():
    for profile in ("smoke", "default", "gpu"):
        merged = config.validate_profile(profile)
        assert set(merged) == set(config.chapters())
        for chapter, values in merged.items():
            assert values["profile"] == profile
            assert set(values) == set(config.chapter_parameters(chapter))


def test_chapter_defaults_are_typed_literals():
    for chapter in config.chapters():
        params = config.chapter_parameters(chapter)
        assert {"profile", "seed", "threads", "device"} <= set(params)
        for p in params.values():
            assert isinstance(p.default, p.type)


def test_merge_order_defaults_common_section_then_overrides(project):
    write_profile(project, "mine", "common:\n  seed: 3\n  stats_scenes: 50\n01_microworld:\n  seed: 4\n")
    assert config.merged_parameters("02_backbones", "mine")["seed"] == 3  # common applies where declared
    merged = config.merged_parameters("01_microworld", "mine")
    assert merged["seed"] == 4 and merged["stats_scenes"] == 50  # the chapter section beats common
    assert merged["grid_scenes"] == config.chapter_parameters("01_microworld")["grid_scenes"].default
    assert config.merged_parameters("01_microworld", "mine", ["seed=9"])["seed"] == 9  # --set beats all


def test_set_values_are_read_as_yaml_and_ints_widen_to_floats():
    assert config.parse_overrides(["a=3", "b=0.001", "c=true", "d=[1, 2]", "e=text"]) == \
        {"a": 3, "b": 0.001, "c": True, "d": [1, 2], "e": "text"}
    assert config.check_type("lr", 1, float, "here") == 1.0
    assert config.check_type("lr", "1e-3", float, "here") == 0.001  # PyYAML reads 1e-3 as a string


@pytest.mark.parametrize("text, message", [
    ("common:\n  sede: 1\n", r"smoke\.yaml, section 'common': unknown key 'sede'; allowed keys are: .*seed"),
    ("01_microworld:\n  clip_model: x\n",
     r"section '01_microworld': unknown key 'clip_model'; allowed keys are: .*grid_scenes"),
    ("common:\n  seed: zero\n", r"section 'common': 'seed' must be int, got str \('zero'\)"),
    ("common:\n  threads: true\n", r"'threads' must be int, got bool"),
    ("chapter99:\n  seed: 1\n",
     r"unknown section 'chapter99'; allowed sections are: description, common, 01_microworld"),
    ("common: [1, 2]\n", r"section 'common' must be a mapping"),
    ("common:\n  seed: 1\n   threads: 2\n", r"smoke\.yaml, line 3, column \d+: malformed YAML"),
    ("- just\n- a list\n", r"expected a mapping of sections at the top, got list"),
])
def test_bad_profiles_name_the_file_the_key_and_what_is_allowed(project, text, message):
    write_profile(project, "smoke", text)
    with pytest.raises(ConfigError, match=message):
        config.merged_parameters("01_microworld", "smoke")


@pytest.mark.parametrize("overrides, message", [
    (["seed"], r"--set 'seed': expected key=value"),
    (["sede=1"], r"--set for chapter 01_microworld: unknown key 'sede'; allowed keys are"),
    (["seed=1.5"], r"--set: 'seed' must be int, got float"),
    (["seed=[1"], r"--set 'seed=\[1': the value is not valid YAML"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.merged_parameters("01_microworld", "smoke", overrides)


def test_unknown_chapter_and_profile_list_what_exists():
    with pytest.raises(ConfigError, match=r"unknown chapter '99'; chapters are: 01_microworld, 02_backbones"):
        config.resolve_chapter("99")
    with pytest.raises(ConfigError, match=r"unknown profile 'fast'; profiles are: .*default.*smoke"):
        config.merged_parameters("01_microworld", "fast")


def test_chapter_names_resolve_by_number_slug_or_stem():
    for name in ("02", "2", "backbones", "02_backbones", "02_backbones.py"):
        assert config.resolve_chapter(name) == "02_backbones"


def test_parameters_cell_must_hold_typed_literals(project):
    path = project / "book" / "01_microworld.py"
    path.write_text(path.read_text().replace("seed: int = 0", "seed = 0"))
    with pytest.raises(ConfigError, match=r"01_microworld\.py, line \d+: the parameters cell may hold only"):
        config.chapter_parameters("01_microworld")
    path.write_text(path.read_text().replace("seed = 0", "seed: int = int(1)"))
    with pytest.raises(ConfigError, match=r"the default of 'seed' is not a literal"):
        config.chapter_parameters("01_microworld")
