"""Corpora: each adapter's layout, detection, the shared vocabulary, the protocols, every layout end to end,
and bad input refused before any work (one line, exit 2, nothing created)."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.config import RunConfig
from harness.corpora import ADAPTERS, cremad, emodb, iemocap, savee, tess, turev
from harness.corpora.base import EMOTIONS
from harness.corpora.load import detect, load_corpus
from harness.errors import DataError
from harness.train.splits import check_design, make_split, protocol_folds, resolve_folds
from harness.train.synth import generate_corpus

# The synthetic speakers each layout gets: enough for a speaker-disjoint train/val/test split (TESS has
# only two speakers; IEMOCAP's four are two sessions, so a session can be left out).
ACTORS = {"tess": 2, "iemocap": 4}
# The EmoBox folds for RAVDESS, written out here so the adapter's table is checked against them.
EMOBOX = (("01", "11", "20", "21"), ("04", "10", "12", "14"), ("08", "09", "19", "23"),
          ("03", "05", "07", "24"), ("02", "15", "16", "18"), ("06", "13", "17", "22"))


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Every adapter's synthetic layout at 8 kHz, written once for the module: name -> the root to read."""
    base = tmp_path_factory.mktemp("layouts")
    return {name: generate_corpus(base / name, n_actors=ACTORS.get(name, 3), sr=8000, layout=name)
            for name in ADAPTERS}


def placeholders(root, relpaths):
    """Files with a few bytes each: enough for parsing, detection and splits (load hashes bytes, never decodes)."""
    for rel in relpaths:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"RIFF" + rel.encode())
    return root


def write_manifest(path, rows, header=("path", "speaker", "label")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def tone(path, seconds=1.0, rate=16000, channels=1, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    sf.write(path, np.stack([y, 0.5 * y], axis=1) if channels == 2 else y, rate, subtype="PCM_16")
    return path


# --- each adapter reads its corpus's own names --------------------------------------------------

def test_cremad_names_give_actor_sentence_emotion_and_intensity():
    e = cremad.parse_name("AudioWAV/1001_DFA_ANG_XX.wav")
    assert (e.speaker, e.sentence, e.label, e.intensity, e.gender) == ("1001", "DFA", "angry", "", "")
    e = cremad.parse_name("1091_IEO_HAP_HI.wav")
    assert (e.speaker, e.label, e.intensity) == ("1091", "happy", "high")
    assert [cremad.parse_name(f"1001_DFA_{c}_LO.wav").label for c in ("DIS", "FEA", "NEU", "SAD")] == \
        ["disgust", "fearful", "neutral", "sad"]


@pytest.mark.parametrize("bad", ["1001_DFA_XYZ_XX.wav", "1001_DFA_ANG_ZZ.wav", "101_DFA_ANG_XX.wav",
                                 "1001-DFA-ANG-XX.wav"])
def test_a_malformed_cremad_name_is_refused_with_the_file_named(bad):
    with pytest.raises(DataError, match=f"malformed CREMA-D file name 'AudioWAV/{bad}'"):
        cremad.parse_name(f"AudioWAV/{bad}")


def test_cremad_genders_come_from_video_demographics_beside_or_above_the_clips(tmp_path):
    clips = placeholders(tmp_path / "c" / "AudioWAV", ["1001_DFA_ANG_XX.wav", "1002_DFA_SAD_XX.wav",
                                                       "1003_DFA_NEU_XX.wav"])
    assert {e.gender for e in cremad.list_entries(clips)} == {""}  # no demographics: unknown, not guessed
    write_manifest(tmp_path / "c" / "VideoDemographics.csv", [[1001, 51, "Male", "Caucasian", "Not Hispanic"],
                                                              [1002, 21, "Female", "Caucasian", "Not Hispanic"]],
                   header=("ActorID", "Age", "Sex", "Race", "Ethnicity"))
    for root in (clips, clips.parent):  # the AudioWAV folder (csv one up) or the folder holding both
        assert {e.speaker: e.gender for e in cremad.list_entries(root)} == {"1001": "m", "1002": "f", "1003": ""}


def test_emodb_names_give_speaker_text_emotion_and_the_documented_gender():
    e = emodb.parse_name("wav/03a01Fa.wav")
    assert (e.speaker, e.sentence, e.label, e.gender) == ("03", "a01", "happy", "m")
    assert [(emodb.parse_name(n).label, emodb.parse_name(n).gender) for n in ("08b10Lc.wav", "16a05Wa.wav",
                                                                              "15b03Eb.wav", "09a02Ad.wav")] == \
        [("boredom", "f"), ("angry", "f"), ("disgust", "m"), ("fearful", "f")]


@pytest.mark.parametrize("bad", ["03a01Xa.wav", "3a01Fa.wav", "03a01fa.wav", "03a01Fa.mp3.wav"])
def test_a_malformed_emodb_name_is_refused_with_the_file_named(bad):
    with pytest.raises(DataError, match=f"malformed EmoDB file name 'wav/{bad}'"):
        emodb.parse_name(f"wav/{bad}")


@pytest.mark.parametrize("name, speaker, label", [
    ("DC_a01.wav", "DC", "angry"), ("DC_sa01.wav", "DC", "sad"), ("JE_su15.wav", "JE", "surprised"),
    ("AudioData/KL/sa03.wav", "KL", "sad"), ("JK/su30.wav", "JK", "surprised"), ("JK/n30.wav", "JK", "neutral"),
    ("KL_d07.wav", "KL", "disgust"), ("DC/f02.wav", "DC", "fearful"), ("JE_h11.wav", "JE", "happy"),
])
def test_savee_reads_flat_and_nested_names_with_sa_and_su_before_the_single_letters(name, speaker, label):
    e = savee.parse_name(name)
    assert (e.speaker, e.label, e.gender) == (speaker, label, "m")


@pytest.mark.parametrize("bad", ["DC_s01.wav", "XX_a01.wav", "AB/a01.wav", "DC_a1.wav", "DC_sad01.wav"])
def test_a_malformed_savee_name_is_refused_with_the_file_named(bad):
    with pytest.raises(DataError, match=f"malformed SAVEE file name '{bad}'"):
        savee.parse_name(bad)


@pytest.mark.parametrize("name, speaker, word, label", [
    ("OAF_angry/OAF_back_angry.wav", "OAF", "back", "angry"),
    ("YAF_pleasant_surprised/YAF_bath_ps.wav", "YAF", "bath", "surprised"),
    ("OAF_Pleasant_surprise/OAF_bean_pleasant_surprise.wav", "OAF", "bean", "surprised"),
    ("OAF_Fear/OAF_beg_fear.wav", "OAF", "beg", "fearful"),
    ("YAF_neutral/YAF_boat_neutral.wav", "YAF", "boat", "neutral"),
])
def test_tess_names_give_speaker_word_and_emotion_with_ps_as_surprise(name, speaker, word, label):
    e = tess.parse_name(name)
    assert (e.speaker, e.sentence, e.label, e.gender) == (speaker, word, label, "f")


@pytest.mark.parametrize("bad", ["OAF_back_bored.wav", "ZAF_back_angry.wav", "OAF_angry.wav"])
def test_a_malformed_tess_name_is_refused_with_the_file_named(bad):
    with pytest.raises(DataError, match=f"malformed TESS file name '{bad}'"):
        tess.parse_name(bad)


def test_turev_names_need_the_folder_and_the_code_to_agree():
    e = turev.parse_name("Angry/1234_kz_abla.wav")
    assert (e.speaker, e.label, e.sentence) == ("1234", "angry", "abla")
    for bad in ("Calm/1234_kz_abla.wav", "Angry/kz_abla.wav", "Joy/1234_kz_abla.wav"):
        with pytest.raises(DataError, match=f"malformed TurEV-DB file name '{bad}'"):
            turev.parse_name(bad)


IEMOCAP_LABELS = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_F001\texc\t[3.5000, 3.5000, 3.0000]
[14.8872 - 18.0175]\tSes01F_impro01_M000\tfru\t[2.5000, 3.5000, 3.5000]
[19.2900 - 20.7875]\tSes01F_impro01_M001\txxx\t[2.5000, 3.0000, 3.0000]
[21.0000 - 22.5000]\tSes01F_impro01_M002\tang\t[1.5000, 4.0000, 4.0000]
[23.0000 - 24.5000]\tSes01F_impro01_F002\thap\t[4.0000, 3.0000, 3.0000]
[25.0000 - 26.5000]\tSes01F_impro01_F003\tsur\t[4.0000, 4.0000, 3.0000]
"""


def iemocap_root(tmp_path, with_audio=("Ses01F_impro01_F000", "Ses01F_impro01_F001", "Ses01F_impro01_M002",
                                       "Ses01F_impro01_F002")):
    root = tmp_path / "IEMOCAP_full_release"
    (root / "Session1/dialog/EmoEvaluation").mkdir(parents=True)
    (root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").write_text(IEMOCAP_LABELS)
    (root / "Session2/dialog/EmoEvaluation").mkdir(parents=True)
    (root / "Session2/dialog/EmoEvaluation/Ses02M_script01_1.txt").write_text(
        "[1.0000 - 2.0000]\tSes02M_script01_1_F003\tsad\t[2.0000, 2.0000, 2.0000]\n")
    placeholders(root, [f"Session1/sentences/wav/Ses01F_impro01/{u}.wav" for u in with_audio]
                 + ["Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F003.wav"])
    return root


def test_iemocap_reads_its_label_files_as_four_classes_with_excited_merged_into_happy(tmp_path):
    entries = iemocap.list_entries(iemocap_root(tmp_path))
    got = {e.relpath.rsplit("/", 1)[1][:-4]: (e.label, e.speaker, e.session, e.gender) for e in entries}
    assert got == {  # fru, xxx and sur are left out; speaker = session + the utterance's gender letter
        "Ses01F_impro01_F000": ("neutral", "1F", "1", "f"), "Ses01F_impro01_F001": ("happy", "1F", "1", "f"),
        "Ses01F_impro01_M002": ("angry", "1M", "1", "m"), "Ses01F_impro01_F002": ("happy", "1F", "1", "f"),
        "Ses02M_script01_1_F003": ("sad", "2F", "2", "f")}
    assert next(e for e in entries if e.speaker == "2F").relpath == \
        "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F003.wav"


def test_an_iemocap_label_without_its_audio_names_the_label_file_and_the_utterance(tmp_path):
    root = iemocap_root(tmp_path, with_audio=("Ses01F_impro01_F000",))
    with pytest.raises(DataError, match=r"Ses01F_impro01\.txt: utterance 'Ses01F_impro01_F001' has no audio"):
        iemocap.list_entries(root)
    with pytest.raises(DataError, match="no IEMOCAP label files"):
        iemocap.list_entries(tmp_path / "elsewhere")


def test_a_manifest_names_its_corpus_after_the_file_or_its_corpus_column(tmp_path):
    tone(tmp_path / "a.wav")
    one = load_corpus([write_manifest(tmp_path / "shemo.csv", [["a.wav", "s1", "angry"], ["a.wav", "s2", "sad"]])])
    assert one.speakers == ["shemo:s1", "shemo:s2"] and one.name == "shemo"
    two = load_corpus([write_manifest(tmp_path / "mixed.csv", [["a.wav", "s1", "angry", "x", "f"],
                                                               [str(tmp_path / "a.wav"), "s1", "sad", "y", "M"]],
                                      header=("path", "speaker", "label", "corpus", "gender"))])
    assert two.speakers == ["x:s1", "y:s1"] and two.gender_of() == {"x:s1": "f", "y:s1": "m"}


# --- detection ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ADAPTERS))
def test_each_synthetic_layout_is_detected_and_read_with_namespaced_speakers(layouts, name):
    assert detect(layouts[name]) == name
    corpus = load_corpus([layouts[name]])
    assert corpus.sources[0].adapter == name and len(corpus.speakers) == ACTORS.get(name, 3)
    assert all(s.startswith(f"{corpus.name}:") for s in corpus.speakers)


def test_an_ambiguous_folder_says_what_it_could_be(tmp_path):
    root = placeholders(tmp_path / "mixed", ["Actor_01/03-01-01-01-01-01-01.wav", "1001_DFA_ANG_XX.wav"])
    with pytest.raises(DataError, match=r"could be ravdess or cremad: name one with --corpus$"):
        detect(root)


def test_an_unknown_folder_lists_every_layout_in_one_line(tmp_path):
    root = placeholders(tmp_path / "other", ["hello.wav"])
    with pytest.raises(DataError) as e:
        detect(root)
    msg = str(e.value)
    assert "\n" not in msg and "no known corpus layout" in msg
    assert all(f"{a.name}: {a.layout}" in msg for a in ADAPTERS.values())


def test_a_named_adapter_refuses_another_corpus_naming_the_file(layouts):
    with pytest.raises(DataError, match=r"malformed TESS file name 'Actor_01/03-01-"):
        load_corpus([layouts["ravdess"]], ["tess"])


# --- the vocabulary and labels over several corpora -------------------------------------------------

def test_every_adapter_declares_its_classes_in_the_vocabulary_its_licence_source_and_layout():
    for a in ADAPTERS.values():
        assert a.classes and a.classes == tuple(e for e in EMOTIONS if e in a.classes), a.name
        assert a.licence and a.url and a.layout and a.synth_path is not None, a.name


def test_emotion_mode_uses_the_corpus_own_classes_and_sentiment_groups_them(layouts):
    corpus = load_corpus([layouts["turev"]])
    assert corpus.class_names("emotion") == ("calm", "happy", "sad", "angry")
    assert corpus.class_names("sentiment") == ("neutral", "positive", "negative")
    calm = [i for i, c in enumerate(corpus.clips) if c.label == "calm"]
    assert set(corpus.labels("sentiment")[calm]) == {0}  # calm counts as neutral


def test_two_corpora_share_their_common_labels_and_say_what_they_dropped(layouts):
    alone = load_corpus([layouts["ravdess"]])
    both = load_corpus([layouts["ravdess"], layouts["turev"]])
    assert both.emotions == ("calm", "happy", "sad", "angry")
    n_left = sum(c.label in ("neutral", "fearful", "disgust", "surprised") for c in alone.clips)
    assert both.dropped == f"neutral, fearful, disgust, surprised: {n_left} clip(s) left out"
    assert both.describe() == (f"ravdess ({len(alone.clips) - n_left} of {len(alone.clips)} clips, 3 speakers, "
                               f"4 of 8 classes); turev (96 clips, 3 speakers, 4 classes)")
    assert {s.split(":")[0] for s in both.speakers} == {"ravdess", "turev"}


def test_the_same_speaker_id_in_two_corpora_is_two_speakers(tmp_path):
    tone(tmp_path / "a.wav")
    a = write_manifest(tmp_path / "a.csv", [["a.wav", "s1", "angry"]])
    b = write_manifest(tmp_path / "b.csv", [["a.wav", "s1", "angry"]])
    assert load_corpus([a, b]).speakers == ["a:s1", "b:s1"]


def test_a_label_map_renames_before_labels_are_shared(layouts):
    plain = load_corpus([layouts["cremad"], layouts["turev"]])
    assert plain.emotions == ("happy", "sad", "angry")
    mapped = load_corpus([layouts["cremad"], layouts["turev"]], label_map={"calm": "neutral"})
    assert mapped.emotions == ("neutral", "happy", "sad", "angry")
    assert mapped.dropped.startswith("fearful, disgust: ") and mapped.sources[1].n_clips == mapped.sources[1].n_total


def test_labels_keep_only_the_named_emotions_every_corpus_holds(layouts):
    kept = load_corpus([layouts["ravdess"], layouts["turev"]], keep=("angry", "sad"))
    assert kept.emotions == ("sad", "angry") and {c.label for c in kept.clips} == {"sad", "angry"}
    assert kept.dropped.startswith("neutral, calm, happy, fearful, disgust, surprised: ")
    with pytest.raises(DataError, match="labels neutral are not in corpus turev"):
        load_corpus([layouts["ravdess"], layouts["turev"]], keep=("neutral",))


# --- protocols ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ravdess24(tmp_path_factory):
    """24 RAVDESS actors, one clip of each emotion, as placeholder bytes: the folds need names only."""
    root = tmp_path_factory.mktemp("ravdess24")
    return load_corpus([placeholders(root, [f"Actor_{a:02d}/03-01-{e:02d}-01-01-01-{a:02d}.wav"
                                            for a in range(1, 25) for e in range(1, 9)])])


def test_emobox_gives_ravdess_its_six_published_folds_of_four_actors(ravdess24):
    folds = protocol_folds(ravdess24, "emobox", 0, 0)
    assert folds == tuple(tuple(f"ravdess:{a}" for a in f) for f in EMOBOX)
    cfg = RunConfig(protocol="emobox")
    assert cfg.cv_folds == 6
    check_design(ravdess24, cfg)
    for k, fold in enumerate(folds):
        s = make_split(ravdess24, cfg.replace(fold=k))
        assert s.test_speakers == fold
        sides = [set(s.train_speakers), set(s.val_speakers), set(s.test_speakers)]
        assert set.union(*sides) == set(ravdess24.speakers) and sum(map(len, sides)) == 24


def test_emobox_needs_every_one_of_its_actors_and_a_corpus_with_published_folds(ravdess24, layouts):
    with pytest.raises(DataError, match=r"--protocol emobox: corpus ravdess lacks 21 of the protocol's test speakers "
                                        r"\(ravdess:11, ravdess:20, ravdess:21, ravdess:04, ravdess:10, ravdess:12, "
                                        r"\.\.\.\): it needs all 24"):
        protocol_folds(load_corpus([layouts["ravdess"]]), "emobox", 0, 0)
    with pytest.raises(DataError, match=r"corpus cremad has no published emobox folds \(corpora that have: ravdess\)"):
        protocol_folds(load_corpus([layouts["cremad"]]), "emobox", 0, 0)


def test_leave_one_session_out_tests_each_iemocap_session_on_its_own(layouts):
    corpus = load_corpus([layouts["iemocap"]])
    cfg = resolve_folds(RunConfig(protocol="leave_one_session_out"), corpus)
    assert cfg.cv_folds == 2
    assert protocol_folds(corpus, cfg.protocol, 2, 0) == (("iemocap:1F", "iemocap:1M"), ("iemocap:2F", "iemocap:2M"))
    with pytest.raises(DataError, match="leave_one_session_out: corpus ravdess has no sessions"):
        protocol_folds(load_corpus([layouts["ravdess"]]), "leave_one_session_out", 0, 0)


def test_leave_one_speaker_out_is_one_fold_per_speaker_and_refuses_another_count(layouts):
    corpus = load_corpus([layouts["cremad"]])
    cfg = resolve_folds(RunConfig(protocol="leave_one_speaker_out"), corpus)
    assert cfg.cv_folds == 3 and protocol_folds(corpus, cfg.protocol, 3, 0) == tuple((s,) for s in corpus.speakers)
    with pytest.raises(DataError, match="leave_one_speaker_out on cremad has 3 folds: leave --cv_folds out"):
        resolve_folds(RunConfig(protocol="leave_one_speaker_out", cv_folds=2), corpus)


def test_leave_one_corpus_out_tests_each_corpus_with_the_others_training(layouts):
    corpus = load_corpus([layouts["ravdess"], layouts["turev"]])
    cfg = resolve_folds(RunConfig(protocol="leave_one_corpus_out"), corpus)
    assert cfg.cv_folds == 2
    for k, name in enumerate(("ravdess", "turev")):
        s = make_split(corpus, cfg.replace(fold=k))
        assert {c.corpus for c in (corpus.clips[i] for i in s.test)} == {name}
        assert not {c.corpus for c in (corpus.clips[i] for i in np.concatenate([s.train, s.val]))} & {name}
    with pytest.raises(DataError, match="leave_one_corpus_out needs at least 2 corpora"):
        protocol_folds(load_corpus([layouts["turev"]]), "leave_one_corpus_out", 0, 0)


def test_leave_one_corpus_out_reads_the_corpora_of_one_manifest_from_its_corpus_column(tmp_path):
    tone(tmp_path / "a.wav")
    rows = [["a.wav", s, "sad", name] for name in ("x", "y") for s in ("s1", "s2")]
    corpus = load_corpus([write_manifest(tmp_path / "m.csv", rows, header=("path", "speaker", "label", "corpus"))])
    assert protocol_folds(corpus, "leave_one_corpus_out", 0, 0) == (("x:s1", "x:s2"), ("y:s1", "y:s2"))


def test_test_corpus_tests_on_every_clip_of_one_corpus(layouts):
    corpus = load_corpus([layouts["ravdess"], layouts["turev"]])
    cfg = RunConfig(data_root=f"{layouts['ravdess']},{layouts['turev']}", test_corpus="turev")
    check_design(corpus, cfg)
    s = make_split(corpus, cfg)
    assert sorted(s.test) == [i for i, c in enumerate(corpus.clips) if c.corpus == "turev"]
    assert all(sp.startswith("ravdess:") for sp in s.train_speakers + s.val_speakers)


def test_kfold_over_two_corpora_keeps_every_speaker_on_one_side_and_deals_each_corpus_across_folds(layouts):
    corpus = load_corpus([layouts["ravdess"], layouts["cremad"]])
    cfg = RunConfig(cv_folds=3)
    check_design(corpus, cfg)
    speaker = np.array([c.speaker for c in corpus.clips])
    tested = []
    for k in range(3):
        s = make_split(corpus, cfg.replace(fold=k))
        sides = [set(speaker[s.train]), set(speaker[s.val]), set(speaker[s.test])]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert sorted(np.concatenate([s.train, s.val, s.test])) == list(range(len(corpus.clips)))
        assert sorted(sp.split(":")[0] for sp in s.test_speakers) == ["cremad", "ravdess"]
        tested += s.test_speakers
    assert sorted(tested) == corpus.speakers


def test_a_declared_split_follows_the_manifest_split_column(tmp_path):
    tone(tmp_path / "a.wav")
    rows = [["a.wav", s, "angry", side] for s, side in (("s1", "train"), ("s2", "val"), ("s3", "test"))]
    corpus = load_corpus([write_manifest(tmp_path / "m.csv", rows, header=("path", "speaker", "label", "split"))])
    s = make_split(corpus, RunConfig(protocol="declared"))
    assert (s.train_speakers, s.val_speakers, s.test_speakers) == (("m:s1",), ("m:s2",), ("m:s3",))


# --- every layout end to end ----------------------------------------------------------------------

def read_predictions(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_every_layout_trains_end_to_end_to_a_finished_run_with_ua_and_wa(layouts, name, tmp_path, tracking_uri,
                                                                           experiment, capsys):
    extra = {"tess": ["--split", "random", "--train_ratio", "0.6", "--val_ratio", "0.2"],  # two speakers: no
             # speaker-disjoint train/val/test; a fifth of the clips tests every class
             "iemocap": ["--protocol", "leave_one_session_out", "--cv_folds", "2", "--fold", "0"]}.get(name, [])
    argv = ["train", "--data_root", str(layouts[name]), "--corpus", name, "--mode", "emotion", "--epochs", "1",
            "--n_mels", "16", "--sr", "8000", "--n_fft", "256", "--hop_length", "128", "--batch_size", "64",
            "--device", "cpu", "--tracking_uri", tracking_uri, "--experiment", experiment,
            "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    from harness import tracking

    c = tracking.client(tracking_uri)
    (run,) = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    own = ADAPTERS[name].classes if name != "manifest" else EMOTIONS[:8]  # the synthetic manifest has no boredom
    assert run.info.status == "FINISHED"
    assert run.data.tags["harness.classes"] == ",".join(own)
    assert run.data.tags["harness.corpora"].startswith(f"{name} (")
    m = run.data.metrics
    rows = read_predictions(tmp_path / "out" / "test_predictions.csv")
    assert {r["true"] for r in rows} == set(own)  # every class is tested, so UA is the mean of their recalls
    recall = [np.mean([r["pred"] == k for r in rows if r["true"] == k]) for k in own]
    assert m["test_ua"] == pytest.approx(np.mean(recall))
    assert m["test_wa"] == pytest.approx(np.mean([r["pred"] == r["true"] for r in rows])) == m["test_accuracy"]
    assert 0.0 <= m["test_f1_macro"] <= 1.0
    if name == "iemocap":
        assert run.data.tags["harness.fold"] == "0" and run.data.tags["harness.cv_folds"] == "2"
        assert {r["speaker"] for r in rows} == {"iemocap:1F", "iemocap:1M"}


def test_synth_says_how_to_read_the_layout_it_wrote(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "m"), "--layout", "manifest", "--actors", "1", "--sr", "8000"]) == 0
    out = capsys.readouterr().out
    assert f"--data_root {tmp_path / 'm' / 'manifest.csv'} --corpus manifest" in out
    assert len(load_corpus([tmp_path / "m" / "manifest.csv"]).clips) == 60


# --- bad input: one line naming the file, row or flag; exit 2; nothing created -------------------------

def bad_manifests(tmp_path):
    """name -> (data_root, extra flags, what the line must say)."""
    tone(tmp_path / "ok.wav", 0.2)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    header_split = ("path", "speaker", "label", "split")
    m = {
        "missing column": (write_manifest(tmp_path / "nolabel.csv", [["ok.wav", "s1"]], header=("path", "speaker")),
                           [], ["nolabel.csv", "missing column(s) label", "expected a header with path, speaker, label"]),
        "missing file": (write_manifest(tmp_path / "gone.csv", [["ok.wav", "s1", "sad"], ["nope.wav", "s2", "sad"]]),
                         [], ["gone.csv', line 3", "nope.wav", "does not exist"]),
        "unknown label": (write_manifest(tmp_path / "joy.csv", [["ok.wav", "s1", "sad"], ["ok.wav", "s2", "joy"]]),
                          [], ["joy.csv', line 3", "unknown label 'joy'", "expected one of neutral"]),
        "unreadable file": (write_manifest(tmp_path / "junk.csv", [["ok.wav", "s1", "sad"], ["ok.wav", "s2", "sad"],
                                                                    ["junk.wav", "s3", "angry"]]),
                            [], ["cannot read audio file", "junk.wav"]),
        "no shared label": (f"{write_manifest(tmp_path / 'a.csv', [['ok.wav', 's1', 'neutral']])},"
                            f"{write_manifest(tmp_path / 'b.csv', [['ok.wav', 's1', 'angry']])}",
                            [], ["share no label (a: neutral; b: angry)", "label_map"]),
        "speaker on two sides": (write_manifest(tmp_path / "decl.csv", [["ok.wav", "s1", "sad", "train"],
                                                                        ["ok.wav", "s2", "sad", "val"],
                                                                        ["ok.wav", "s1", "sad", "test"]],
                                                header=header_split),
                                 ["--protocol", "declared"], ["--protocol declared: speaker decl:s1 is in test and train"]),
    }
    return {k: (str(root), flags, needles) for k, (root, flags, needles) in m.items()}


def bad_layout_flags(layouts):
    r, c = str(layouts["ravdess"]), str(layouts["cremad"])
    return {
        "more folds than speakers": (r, ["--cv_folds", "5"], ["--cv_folds 5 needs at least 5 speakers", "has 3"]),
        "emobox without its actors": (r, ["--protocol", "emobox"], ["--protocol emobox", "lacks 21", "needs all 24"]),
        "emobox on another corpus": (c, ["--protocol", "emobox"], ["corpus cremad has no published emobox folds"]),
        "no sessions": (r, ["--protocol", "leave_one_session_out"], ["leave_one_session_out", "has no sessions"]),
        "wrong fold count": (c, ["--protocol", "leave_one_speaker_out", "--cv_folds", "2"], ["has 3 folds"]),
        "wrong adapter": (r, ["--corpus", "savee"], ["malformed SAVEE file name 'Actor_01/03-01-01-01-01-01-01.wav'"]),
        "unknown corpus": (r, ["--corpus", "ravdes"], ["invalid --corpus", "'ravdes'"]),
        "one name per folder": (r, ["--corpus", "ravdess,turev"], ["invalid --corpus", "--data_root gives 1"]),
        "unknown --labels": (r, ["--labels", "angry,joy"], ["invalid --labels", "'joy'"]),
        "unknown --label_map": (r, ["--label_map", "calm=relaxed"], ["invalid --label_map", "'relaxed'"]),
        "kept label missing": (f"{r},{layouts['turev']}", ["--labels", "neutral"],
                               ["labels neutral are not in corpus turev"]),
        "test corpus not in data": (f"{r},{layouts['turev']}", ["--test_corpus", "tess"], ["--test_corpus 'tess'"]),
        "test corpus alone": (r, ["--test_corpus", "ravdess"], ["invalid --test_corpus", "at least two corpora"]),
        "unknown layout": (str(layouts["manifest"].parent / "clips"), [], ["no known corpus layout",
                                                                           "name one with --corpus"]),
    }


def assert_refused(rc, err, needles, cwd):
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (cwd / "mlflow.db").exists() and not (cwd / "artifacts").exists() and not (cwd / "mlruns").exists()


def test_each_bad_input_is_one_line_exit_2_before_any_work(tmp_path, layouts, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where --out and the default store would land
    cases = {**bad_manifests(tmp_path), **bad_layout_flags(layouts)}
    for what, (root, flags, needles) in cases.items():
        rc = main(["train", "--data_root", root, "--tracking_uri", f"sqlite:///{work / 'mlflow.db'}", "--epochs", "1",
                   "--device", "cpu", *flags])
        err = capsys.readouterr().err
        try:
            assert_refused(rc, err, needles, work)
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from None
    assert list(work.iterdir()) == []


def test_a_bad_manifest_through_the_command_line_is_one_line_on_stderr(tmp_path):
    (tmp_path / "m.csv").write_text("path,speaker,emotion\nok.wav,s1,sad\n")
    proc = subprocess.run([sys.executable, "-m", "harness", "train", "--data_root", "m.csv"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert_refused(proc.returncode, proc.stderr, ["m.csv", "missing column(s) label", "got path, speaker, emotion"],
                   tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


# --- audio of any rate, channels and length ---------------------------------------------------------

def test_clips_of_any_rate_channel_count_and_length_become_the_same_features(tmp_path):
    from harness.train.features import TOP_DB, compute_features

    files = {"stereo 48k": tone(tmp_path / "s48.wav", 4.0, 48000, channels=2),
             "mono 48k": tone(tmp_path / "m48.wav", 4.0, 48000),
             "44.1k": tone(tmp_path / "t441.wav", 4.0, 44100), "16k": tone(tmp_path / "t16.wav", 4.0, 16000),
             "0.3 s": tone(tmp_path / "short.wav", 0.3, 22050)}
    corpus = load_corpus([write_manifest(tmp_path / "any.csv", [[p.name, "s1", "sad"] for p in files.values()])])
    x = dict(zip(files, compute_features(corpus, 16000, 32, 512, 256, None)[:, 0]))
    assert {v.shape for v in x.values()} == {(32, 188)} and all(np.isfinite(v).all() for v in x.values())
    # stereo is averaged down: the (1 + 0.5) / 2 mix is the mono tone 2.5 dB down (one channel alone would be
    # 0 dB, their sum +3.5 dB); the tolerance is the 16-bit quantisation noise in the bands at the floor
    assert np.allclose(x["stereo 48k"], x["mono 48k"] + 20 * np.log10(0.75), atol=1.0)
    band = int(x["16k"].mean(axis=1).argmax())  # the tone's band: the same level whatever the source rate
    for rate in ("mono 48k", "44.1k"):
        assert int(x[rate].mean(axis=1).argmax()) == band
        assert abs(float(x[rate][band].mean() - x["16k"][band].mean())) < 0.5
    short = x["0.3 s"]  # padded with silence to 3 s: every frame after the clip is at the floor
    assert np.allclose(short[:, 40:], short.max() - TOP_DB) and short[band, :10].mean() > short.max() - 20
