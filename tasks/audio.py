"""``task=audio``: autoregressive modeling of raw waveforms, SaShiMi-style (Goel et al. 2022,
section 5.1; Mamba, Gu & Dao 2023, section 4.4): 1-second 16 kHz clips quantized to 8-bit mu-law
(``seqssm/audio.py``), next-sample prediction with a 256-way softmax; the input stem is the token
embedding of the quantized sample (``TokenLMTask``). Data: an SC09 folder
(``python -m data_prep.sc09``) or, by default, the offline synthesized digits (``seqssm/digits.py``).

Every clip x_1..x_T (T = 16,000) is preceded by the silence code 128 as a start token, so all T
samples are predicted: NLL = -(1/T) Σ_t log2 p(x_t | x_<t) bits per sample (the number SaShiMi
and the Mamba paper report on SC09). Training uses random crops of ``max_len`` samples; validation
and test score whole clips.

``generate`` samples whole clips with the recurrent step (prefill + O(1) per sample) and writes
16 kHz mono WAVs; ``evaluate`` writes test NLL and, for a folder of samples, IS / mIS / AM / FID
from an SC09 digit classifier (``task.classifier``: a ``task=audio_classify`` checkpoint).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seqssm.audio import CLIP_LEN, MU_CLASSES, SAMPLE_RATE, SILENCE, mu_law_decode, mu_law_encode, read_clip, write_wav
from seqssm.audio_metrics import am_score, frechet_distance, inception_score, modified_inception_score
from seqssm.audio_plots import plot_clips
from seqssm.config import EvaluateConfig, GenerateConfig, to_dataclass
from seqssm.errors import CheckpointError, ConfigError, DataError
from seqssm.generation import stream
from seqssm.io import write_json
from seqssm.resume import train_loader
from seqssm.sc09 import load_clips, split_files
from seqssm.tasks.audio_classify import AudioClassifyConfig, AudioClassifyTask, data_root
from seqssm.tasks.base import TokenLMTask


@dataclass
class AudioDataConfig:
    root: str | None = None  # an SC09 folder (python -m data_prep.sc09); None: the offline digits
    max_len: int = 1024  # samples per training crop (SaShiMi trains on whole clips: 16000)
    batch_size: int = 4
    crops_per_epoch: int = 512
    val_clips: int = 16  # whole validation clips scored at each validation (0: all)
    num_workers: int = 0

    def validate(self) -> None:
        if not 2 <= self.max_len <= CLIP_LEN:
            raise ConfigError(f"task.data.max_len={self.max_len}: expected 2..{CLIP_LEN} samples")
        if self.batch_size < 1 or self.crops_per_epoch < 1 or self.val_clips < 0:
            raise ConfigError("task.data.batch_size and crops_per_epoch must be >= 1, val_clips >= 0")


@dataclass
class AudioConfig:
    name: str = "audio"
    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    sample_len: int = CLIP_LEN  # generate: samples per output clip, prompt included
    prompt_len: int = 4000  # generate with prompt=WAV: how many of its first samples to continue
    classifier: str | None = None  # evaluate: a task=audio_classify checkpoint (IS, mIS, AM, FID)
    test_clips: int = 64  # evaluate: whole test clips for NLL (0: all)
    plot_samples: int = 4  # evaluate: clips drawn in samples.png

    def validate(self) -> None:
        if self.sample_len < 2:
            raise ConfigError(f"task.sample_len={self.sample_len}: expected >= 2")
        if self.prompt_len < 1:
            raise ConfigError(f"task.prompt_len={self.prompt_len}: expected >= 1")
        if self.test_clips < 0 or self.plot_samples < 0:
            raise ConfigError("task.test_clips and task.plot_samples must be >= 0")


def with_start(codes: torch.Tensor) -> torch.Tensor:
    """(n, T) mu-law codes -> (n, T + 1) uint8 with the start token (silence) in front."""
    start = torch.full((codes.shape[0], 1), SILENCE, dtype=codes.dtype)
    return torch.cat([start, codes], 1).to(torch.uint8)


def encode_pcm(pcm: torch.Tensor) -> torch.Tensor:
    return mu_law_encode(pcm.float() / 32767)


def spread(files: list, k: int) -> list:
    """``k`` items spread evenly over ``files`` (all of them when k is 0 or more than there are): the
    lists are sorted by digit, so this keeps every digit."""
    if not k or k >= len(files):
        return files
    return [files[int(i * len(files) / k)] for i in range(k)]


class RandomCrops(Dataset):
    """``n`` random crops of ``length`` + 1 codes from random clips; seeded per (seed, epoch, index)."""

    def __init__(self, codes: torch.Tensor, length: int, n: int, seed: int) -> None:
        self.codes, self.length, self.n, self.seed, self.epoch = codes, length, n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        clip = self.codes[int(rng.integers(len(self.codes)))]
        s = int(rng.integers(0, clip.numel() - self.length))
        w = clip[s : s + self.length + 1].long()
        return {"inputs": w[:-1], "targets": w[1:], "mask": torch.ones(self.length, dtype=torch.bool)}


class WholeClips(Dataset):
    def __init__(self, codes: torch.Tensor) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> dict:
        w = self.codes[i].long()
        return {"inputs": w[:-1], "targets": w[1:], "mask": torch.ones(w.numel() - 1, dtype=torch.bool)}


class AudioDataModule(L.LightningDataModule):
    def __init__(self, cfg: AudioDataConfig, seed: int) -> None:
        super().__init__()
        self.cfg, self.root = cfg, data_root(cfg.root)
        self.files = split_files(self.root)
        where = f"task.data.root={self.root}"
        train_pcm, _ = load_clips(self.files["train"], CLIP_LEN, where)
        val_pcm, _ = load_clips(spread(self.files["validation"], cfg.val_clips), CLIP_LEN, where)
        self.train_set = RandomCrops(with_start(encode_pcm(train_pcm)), cfg.max_len, cfg.crops_per_epoch, seed)
        self.val_set = WholeClips(with_start(encode_pcm(val_pcm)))

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.train_set, self.cfg.batch_size, self.cfg.num_workers)  # resumable mid-epoch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.cfg.batch_size, num_workers=self.cfg.num_workers)


def read_sample_folder(folder: str) -> list[tuple[str, torch.Tensor]]:
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise DataError(f"samples={folder}: no such folder")
    wavs = sorted(d.glob("*.wav"))
    if len(wavs) < 2:
        raise DataError(f"samples={folder}: {len(wavs)} WAV file(s), expected at least 2 (mIS and FID compare samples)")
    clips = []
    for w in wavs:
        clip, resampled = read_clip(w, CLIP_LEN)
        if resampled:
            print(f"seqssm: warning: {w} resampled to {SAMPLE_RATE} Hz")
        clips.append((w.name, clip))
    return clips


class AudioTask(TokenLMTask):
    name = "audio"
    vocab_size = MU_CLASSES

    def __init__(self, cfg: AudioConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def make_datamodule(self) -> AudioDataModule:
        return AudioDataModule(self.cfg.data, self.seed)

    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]:
        results = super().compute_metrics(metrics)
        results["bits_per_sample"] = results.pop("bits_per_token")
        return results

    # ------------------------------------------------------------------ generate
    def _prompt(self, cfg: GenerateConfig) -> torch.Tensor:
        """(1, L) codes to continue: the start token, then the first ``prompt_len`` samples of the
        prompt WAV if one is given."""
        if not cfg.prompt:
            return torch.tensor([[SILENCE]])
        if self.cfg.prompt_len >= self.cfg.sample_len:
            raise ConfigError(
                f"task.prompt_len={self.cfg.prompt_len}: expected fewer than task.sample_len={self.cfg.sample_len}"
            )
        if not Path(cfg.prompt).expanduser().is_file():
            raise DataError(f"prompt={cfg.prompt}: no such WAV file")
        clip, resampled = read_clip(Path(cfg.prompt).expanduser(), self.cfg.prompt_len)
        if resampled:
            print(f"seqssm: warning: prompt={cfg.prompt} resampled to {SAMPLE_RATE} Hz")
        return with_start(mu_law_encode(clip)[None]).long()

    @torch.inference_mode()
    def generate(self, net: nn.Module, cfg: GenerateConfig, out: Path) -> None:
        """Write ``num_samples`` clips of ``task.sample_len`` samples to out/sample_000.wav ...
        (16 kHz mono, 16-bit), unconditional or continuing ``prompt`` (a WAV), and
        out/generation.json with the real-time factor (seconds of audio per second of compute)."""
        if cfg.max_new_tokens != GenerateConfig.max_new_tokens:
            raise ConfigError(
                f"max_new_tokens={cfg.max_new_tokens}: task=audio writes clips of task.sample_len samples "
                f"(now {self.cfg.sample_len}, prompt included); set task.sample_len instead"
            )
        if cfg.num_samples < 1 or cfg.batch_size < 1:
            raise ConfigError("num_samples and batch_size must be >= 1")
        device = next(net.parameters()).device
        threads = torch.get_num_threads()
        if device.type == "cpu":  # one step's ops are tiny: intra-op threads only add synchronisation
            torch.set_num_threads(1)
        try:
            self._generate(net, cfg, out, device)
        finally:
            torch.set_num_threads(threads)

    def _generate(self, net: nn.Module, cfg: GenerateConfig, out: Path, device: torch.device) -> None:
        prompt = self._prompt(cfg).to(device)
        new = self.cfg.sample_len - (prompt.shape[1] - 1)
        bar = tqdm(total=cfg.num_samples * new, unit="sample", unit_scale=True, desc="generating", mininterval=1.0)
        start, written = time.time(), []
        for first in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - first)
            steps = []
            for i, tok in enumerate(stream(net, prompt.expand(n, -1), new, cfg.temperature, cfg.top_k, cfg.top_p,
                                           seed=cfg.seed + first)):  # fmt: skip
                steps.append(tok)
                if (i + 1) % 250 == 0 or i + 1 == new:
                    bar.update(n * (250 if (i + 1) % 250 == 0 else (i + 1) % 250))
            codes = torch.cat([prompt.expand(n, -1)[:, 1:], torch.stack(steps, 1)], 1).cpu()
            for j, clip in enumerate(mu_law_decode(codes)):
                path = out / f"sample_{first + j:03d}.wav"
                write_wav(path, clip)
                written.append(path)
        bar.close()
        seconds = time.time() - start
        audio = cfg.num_samples * new / SAMPLE_RATE
        info = {
            "num_samples": cfg.num_samples, "batch_size": cfg.batch_size, "sample_len": self.cfg.sample_len,
            "generated_seconds_of_audio": audio, "compute_seconds": round(seconds, 2),
            "real_time_factor": audio / seconds, "samples_per_second": cfg.num_samples * new / seconds,
            "device": str(device), "prompt": cfg.prompt, "temperature": cfg.temperature, "top_p": cfg.top_p,
        }  # fmt: skip
        write_json(out / "generation.json", info)
        rtf, rate = info["real_time_factor"], info["samples_per_second"]
        print(f"seqssm: wrote {len(written)} WAV files to {out}: {audio:.2f} s of audio in {seconds:.1f} s on {device} "
              f"(real-time factor {rtf:.4f}, {rate:.0f} samples/s)")  # fmt: skip

    # ------------------------------------------------------------------ evaluate
    @torch.inference_mode()
    def test_nll(self, net: nn.Module, batch_size: int) -> tuple[float, int]:
        """Mean NLL in bits per sample over whole test clips (up to ``task.test_clips``)."""
        dm = self.datamodule()
        files = spread(dm.files["testing"], self.cfg.test_clips)
        pcm, _ = load_clips(files, CLIP_LEN, f"task.data.root={dm.root}")
        codes = with_start(encode_pcm(pcm)).long()
        device = next(net.parameters()).device
        total = 0.0
        for i in range(0, len(codes), batch_size):
            w = codes[i : i + batch_size].to(device)
            logits = net(w[:, :-1]).float()
            total += float(nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
        return total / (codes.numel() - len(codes)) / np.log(2), len(codes)

    def load_classifier(self, device: torch.device) -> nn.Module:
        from seqssm.checkpoint import load_model, read_hparams  # seqssm.checkpoint imports the tasks

        path = self.cfg.classifier
        if not path:
            raise ConfigError(
                "task.classifier=null: scoring samples needs an SC09 digit classifier checkpoint "
                "(train one with: python -m seqssm.train task=audio_classify)"
            )
        hp = read_hparams(path)
        if hp["task"] != "audio_classify":
            raise CheckpointError(f"task.classifier={path}: a checkpoint of task {hp['task']!r}, not audio_classify")
        cls_task = AudioClassifyTask(to_dataclass(AudioClassifyConfig, hp["task_config"], "task.classifier"), self.seed)
        return load_model(path, cls_task, device)

    @torch.inference_mode()
    def evaluate(self, net: nn.Module, cfg: EvaluateConfig, out: Path) -> dict[str, float]:
        """out/metrics.json: test NLL (bits per sample); with ``samples=DIR`` also IS, mIS, AM and
        FID of its WAVs (classifier ``task.classifier``; real reference: the testing split), and
        out/samples.png (waveforms and mel spectrograms)."""
        device = next(net.parameters()).device
        classifier = self.load_classifier(device) if cfg.samples else None  # fail early, before the NLL
        samples = read_sample_folder(cfg.samples) if cfg.samples else []
        nll, n_clips = self.test_nll(net, cfg.batch_size)
        results: dict[str, float] = {"test/nll_bits_per_sample": nll, "test/clips": n_clips}
        if classifier is not None:
            dm = self.datamodule()
            real, _ = load_clips(dm.files["testing"], CLIP_LEN, f"task.data.root={dm.root}")
            real_probs, real_feats = classify(classifier, real.float() / 32767, cfg.batch_size, device)
            gen_probs, gen_feats = classify(classifier, torch.stack([x for _, x in samples]), cfg.batch_size, device)
            results.update({
                "samples": len(samples),
                "IS": inception_score(gen_probs),
                "mIS": modified_inception_score(gen_probs),
                "AM": am_score(gen_probs, real_probs),
                "FID": frechet_distance(gen_feats, real_feats),
                "real/IS": inception_score(real_probs),
                "real/mIS": modified_inception_score(real_probs),
                "real/AM": am_score(real_probs, real_probs),
                "sample_digit_counts": np.bincount(gen_probs.argmax(-1).numpy(), minlength=10).tolist(),
            })  # fmt: skip
            plot_clips(samples[: self.cfg.plot_samples], out / "samples.png")
        write_json(out / "metrics.json", results)
        line = f"test NLL {nll:.4f} bits per sample ({n_clips} clips)"
        if classifier is not None:
            line += ", " + ", ".join(f"{k} {results[k]:.3f}" for k in ("IS", "mIS", "AM", "FID"))
        print(f"seqssm: {line}; wrote {out / 'metrics.json'}")
        return results

    def summary(self, results: dict[str, float]) -> str:
        return f"validation NLL {results['val/bits_per_sample']:.4f} bits per sample, accuracy {results['val/acc']:.4f}"


def classify(net: nn.Module, wavs: torch.Tensor, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, samples) waveforms -> (probabilities (n, 10), pooled features (n, d)) on the CPU."""
    probs, feats = [], []
    for i in range(0, len(wavs), batch_size):
        f = net.features(wavs[i : i + batch_size].to(device))
        feats.append(f.float().cpu())
        probs.append(net.head(f).float().softmax(-1).cpu())
    return torch.cat(probs), torch.cat(feats)
