"""The end-to-end quickstart: the README's main job, on a fresh machine, in minutes.

Stages (each is skipped when its output already exists, so a re-run reuses the work)::

    1 data       synthetic Roman imperial coins (denarius.training.synth), split into train / held out
    2 train      both AlexNets (emperor from the obverse, RIC from the reverse), briefly, small
    3 export     the bundle: fp32 + INT8 ONNX, gradient graphs, manifest with sha256, and the
                 class guidebooks of the held-out coins (`denarius guidebook`, for the web page)
    4 serve      `denarius serve` on a free loopback port (a real subprocess), health-checked
    5 identify   held-out coins and the real fixture photos through the gRPC client
    6 landmarks  characteristic-landmark overlays for a few coins, over gRPC
    7 report     report.md + report.html linking every picture; the server is stopped (SIGTERM)

Everything lands in one work folder (default ./denarius-quickstart).
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REAL_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes chosen so the whole run fits in a few minutes on 2 CPU cores.

    Attributes:
        out: work folder.
        seed: seed of the synthetic set and of training.
        emperors, types, coins: size of the synthetic set.
        held_out: fraction of coins kept out of training and identified through the server.
        epochs, input_size, width: training recipe (small AlexNets at small input sizes).
        landmark_coins: coins whose landmarks are drawn (the most confident correct ones).
        open_set_far: false-accept rate of coins outside the catalogue (another seed's
            catalogue) the bundle's open-set threshold is chosen for.
        epsilon: confidence the landmark mask may lose. Lower than the paper's 0.5 because
            small models trained in a minute are less confident: at 0.5 an empty mask often
            already satisfies the constraint and the map says nothing.
    """

    out: Path = Path("denarius-quickstart")
    seed: int = 1
    emperors: int = 4
    types: int = 8
    coins: int = 400
    held_out: float = 0.1
    epochs: int = 40
    input_size: int = 96
    width: float = 0.25
    landmark_coins: int = 3
    epsilon: float = 0.25
    open_set_far: float = 0.05


def _stage(number: int, name: str, detail: str) -> None:
    print(f"\n=== [{number}/7] {name}: {detail}", flush=True)


def make_data(config: QuickstartConfig) -> tuple[Path, Path]:
    """Generate the synthetic set and split it; returns (train manifest, held-out manifest)."""
    data = config.out / "data"
    train, held = data / "train.csv", data / "heldout.csv"
    if train.is_file() and held.is_file():
        print(f"reusing {data}")
        return train, held
    from denarius.training.synth import generate

    summary = generate(data, preset="tiny", seed=config.seed, force=True,
                       n_emperors=config.emperors, n_types=config.types, n_coins=config.coins)
    print(f"wrote {summary.n_coins} coins of {summary.n_types} RIC types under {summary.n_emperors} emperors to {data}")
    with (data / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    # Hold out every k-th coin of each RIC type so every class stays in training.
    every = max(2, round(1 / config.held_out))
    seen: dict[str, int] = {}
    train_rows, held_rows = [], []
    for row in rows:
        seen[row["ric"]] = seen.get(row["ric"], 0) + 1
        (held_rows if seen[row["ric"]] % every == 0 else train_rows).append(row)
    for path, part in ((train, train_rows), (held, held_rows)):
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(part)
        os.replace(temporary, path)
    print(f"{len(train_rows)} coins for training, {len(held_rows)} held out")
    return train, held


def train_models(config: QuickstartConfig, manifest: Path) -> Path:
    run = config.out / "run"
    if (run / "run.json").is_file() and (run / "ric.pt").is_file():
        print(f"reusing {run}")
        return run
    from denarius.training.train import TrainConfig, setup_torch, train_run

    train_config = TrainConfig(epochs=config.epochs, input_size=config.input_size, width=config.width, seed=config.seed, threads=1)
    setup_torch(train_config.threads)
    train_run(manifest, run, config=train_config)
    return run


def make_unknown(config: QuickstartConfig) -> Path:
    """Coins of another catalogue (another seed): emperors and types no bundle made here knows."""
    data = config.out / "unknown"
    if (data / "manifest.csv").is_file():
        print(f"reusing {data}")
        return data / "manifest.csv"
    from denarius.training.synth import generate

    summary = generate(data, preset="tiny", seed=config.seed + 1000, force=True,
                       n_emperors=config.emperors, n_types=config.types, n_coins=max(8 * config.types, config.coins // 4))
    print(f"wrote {summary.n_coins} coins outside the catalogue to {data}")
    return data / "manifest.csv"


def make_bundle(config: QuickstartConfig, run: Path, calibration: Path, held: Path | None = None, unknown: Path | None = None) -> Path:
    bundle = config.out / "bundle"
    if (bundle / "manifest.json").is_file():
        print(f"reusing {bundle}")
        return bundle
    from denarius.export.bundle_export import ExportConfig, export_bundle

    result = export_bundle(run, bundle, config=ExportConfig(
        int8=True, calibration=calibration, calibrate_on=held, unknown_manifest=unknown, open_set_far=config.open_set_far))
    print(f"bundle {result.path} (model version {result.version})")
    rule = result.open_world.get("open_set")
    if rule:
        print(f"open set: {rule['score']} >= {rule['threshold']:.4g} is 'in the catalogue' (AUROC {rule['auroc']:.3f})")
    return bundle


def make_guidebook(bundle: Path, held: Path) -> None:
    """The bundle's class guidebooks from the held-out coins (what `denarius guidebook` writes;
    the web page shows them), unless the bundle has them already."""
    from denarius.engine.bundle import load_bundle
    from denarius.engine.landmarks.guidebook_build import GuidebookConfig, build_guidebook
    from denarius.engine.manifest import read_manifest

    if load_bundle(bundle).guidebook is not None:
        print(f"reusing the guidebook of {bundle}")
        return
    index = build_guidebook(bundle, read_manifest(held), GuidebookConfig(per_class=8, backend="ort-cpu"))
    kinds = [entry["kind"] for entry in index["entries"]]
    print(f"guidebook: {kinds.count('ric')} RIC labels, {kinds.count('emperor')} emperors in {bundle / 'guidebook'}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`denarius serve` as a child process on loopback; stopped with SIGTERM (graceful drain)."""

    def __init__(self, bundle: Path, log_path: Path):
        self.port = _free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "denarius.apps.cli", "serve", str(bundle), "--port", str(self.port), "--metrics-port", "0"]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def _candidates(response) -> list[dict]:
    return [
        {"rank": c.rank, "ric": c.ric, "emperor": c.emperor, "score": round(c.score, 4),
         "p_ric": round(c.p_ric, 4) if c.HasField("p_ric") else None,
         "p_emperor": round(c.p_emperor, 4) if c.HasField("p_emperor") else None,
         "reverse_description": c.reverse_description}
        for c in response.candidates
    ]


def identify_and_draw(config: QuickstartConfig, client, held: Path, merged: dict) -> dict:
    """Stages 5 and 6 through the running server; returns what the report shows.

    ``merged`` is run.json's {class label: [original RIC labels]}: a held-out coin of a
    merged type counts as correct when the merged class is predicted.
    """
    from denarius.engine.manifest import read_manifest

    rename = {label: merged_label for merged_label, labels in merged.items() for label in labels}
    pictures = config.out / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    records = read_manifest(held)
    coins = []
    for record in records:
        response = client.identify(record.obverse, record.reverse, top_k=3, timeout=60)
        coins.append({"coin_id": record.coin_id, "truth": rename.get(record.ric, record.ric), "ric": record.ric,
                      "unknown": response.unknown,
                      "reverse_description": record.reverse_description, "emperor": record.emperor,
                      "obverse": str(record.obverse), "reverse": str(record.reverse), "candidates": _candidates(response)})
    correct = sum(c["candidates"][0]["ric"] == c["truth"] for c in coins)
    print(f"held-out coins identified through gRPC: {correct}/{len(coins)} top-1 correct")

    real = None
    if REAL_FIXTURES.is_dir():
        # Copied next to the report so that report.md/html are self-contained.
        import shutil

        obverse, reverse = (Path(shutil.copy(REAL_FIXTURES / f"maximianus_{side}.jpg", pictures)) for side in ("obverse", "reverse"))
        response = client.identify(obverse, reverse, top_k=3, timeout=60)
        real = {"obverse": str(obverse), "reverse": str(reverse), "candidates": _candidates(response),
                "note": "a real antoninianus of Maximianus; no bundle made here knows this emperor",
                "unknown": response.unknown,
                "open_set_score": round(response.open_set_score, 4) if response.HasField("open_set_score") else None}
        verdict = "unknown (not in the catalogue)" if real["unknown"] else "in the catalogue"
        print(f"real fixture photos: {verdict}, open-set score {real['open_set_score']}; "
              f"top candidate {real['candidates'][0]['ric']} (score {real['candidates'][0]['score']})")

    _stage(6, "landmarks", f"optimised landmark overlays of {config.landmark_coins} held-out coins, both sides")
    overlays = []
    confident = sorted(coins, key=lambda c: (c["candidates"][0]["ric"] != c["truth"], -c["candidates"][0]["score"]))
    for coin in confident[: config.landmark_coins]:
        for side in ("obverse", "reverse"):
            response = client.landmarks(Path(coin[side]), side=side, epsilon=config.epsilon, overlay=True, top_regions=3, timeout=300)
            path = pictures / f"{coin['coin_id']}_{side}_landmarks.png"
            path.write_bytes(response.overlay_png)
            overlays.append({"coin_id": coin["coin_id"], "side": side, "png": str(path), "target": response.target,
                             "p_full": round(response.probability, 3),
                             "p_masked": round(response.masked_probability, 3) if response.HasField("masked_probability") else None,
                             "iterations": response.iterations})
    return {"coins": coins, "correct": correct, "real": real, "overlays": overlays}


def write_report(config: QuickstartConfig, bundle: Path, run: Path, results: dict, seconds: float) -> Path:
    """report.md and report.html (same content) with links to every picture."""
    out = config.out
    run_info = json.loads((run / "run.json").read_text())

    def rel(path: str | Path) -> str:
        return os.path.relpath(Path(path).resolve(), out.resolve())

    lines = [
        "# Denarius quickstart report", "",
        f"Synthetic set: {config.emperors} emperors, {config.types} RIC types, {config.coins} coins "
        f"([contact sheet]({rel(out / 'data' / 'contact_sheet.png')})). Models: AlexNet width {config.width} at "
        f"{config.input_size} px, {config.epochs} epochs from scratch. Bundle: `{bundle}`. Wall time {seconds:.0f} s.", "",
        f"![contact sheet]({rel(out / 'data' / 'contact_sheet.png')})", "",
        f"## Held-out coins through gRPC: {results['correct']}/{len(results['coins'])} top-1 correct", "",
        "A coin of a type that training merged with a near-identical one (reverse descriptions one word apart, as in "
        "the paper) is correct when the merged class is predicted; its own label and the merged class are both shown.", "",
        "| coin | true RIC (reverse) | class trained | top candidate (reverse) | joint score | p(ric) | p(emperor) | correct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for coin in results["coins"]:
        top = coin["candidates"][0]
        merged = coin["truth"] != coin["ric"]
        trained = f"{coin['truth']} (merged)" if merged else coin["truth"]
        lines.append(f"| {coin['coin_id']} | {coin['ric']}: {coin['reverse_description']} | {trained} | "
                     f"{top['ric']}: {top['reverse_description']} | {top['score']} | {top['p_ric']} | {top['p_emperor']} | "
                     f"{'yes' if top['ric'] == coin['truth'] else 'no'} |")
    if results["real"]:
        real = results["real"]
        lines += ["", "## Real photographs", "", f"{real['note']}.", "",
                  f"![obverse]({rel(real['obverse'])}) ![reverse]({rel(real['reverse'])})", "",
                  f"Open-set decision: **{'unknown, not in the catalogue' if real.get('unknown') else 'in the catalogue'}** "
                  f"(score {real.get('open_set_score')}); the best guesses:", "",
                  "| rank | RIC | emperor | score |", "|---|---|---|---|"]
        lines += [f"| {c['rank']} | {c['ric']} | {c['emperor']} | {c['score']} |" for c in real["candidates"]]
    lines += ["", "## Characteristic landmarks (red = more discriminative)", ""]
    for item in results["overlays"]:
        lines.append(f"- {item['coin_id']} {item['side']}: class `{item['target']}`, p {item['p_full']} full -> "
                     f"{item['p_masked']} masked, {item['iterations']} iterations"
                     f"<br>![{item['coin_id']} {item['side']}]({rel(item['png'])})")
    manifest = json.loads((bundle / "manifest.json").read_text())
    calibration, rule = manifest.get("calibration"), manifest.get("open_set")
    if calibration:
        ece = calibration["report"]["ece"]
        lines += ["", "## Calibration and coins outside the catalogue", "",
                  f"Temperatures emperor {calibration['emperor']['temperature']:.3f}, ric {calibration['ric']['temperature']:.3f}; "
                  f"ECE on {calibration['report']['test_coins']} held-out coins: emperor {ece['emperor']['before']:.3f} -> "
                  f"{ece['emperor']['after']:.3f}, ric {ece['ric']['before']:.3f} -> {ece['ric']['after']:.3f}.", "",
                  f"![reliability]({rel(bundle / 'report' / 'reliability.png')})"]
    if rule:
        aurocs = ", ".join(f"{k} {v:.3f}" for k, v in rule["report"]["auroc"].items())
        unknown = sum(bool(c.get("unknown")) for c in results["coins"])
        lines += ["", f"Open set: score `{rule['score']}`, threshold {rule['threshold']:.4g} for a false-accept rate of "
                  f"{rule['far']:.0%} on {rule['report']['unknown_coins']} coins of another catalogue; AUROC {aurocs}. "
                  f"Held-out coins of the catalogue called unknown: {unknown}/{len(results['coins'])}.", "",
                  f"![risk-coverage]({rel(bundle / 'report' / 'risk_coverage.png')})"]
    history = run_info.get("history") or {}
    if history:
        lines += ["", "## Training", "", "```", json.dumps(history, indent=1)[:2000], "```"]
    markdown = "\n".join(lines) + "\n"
    (out / "report.md").write_text(markdown, encoding="utf-8")
    (out / "report.html").write_text(_markdown_to_html(markdown), encoding="utf-8")
    return out / "report.md"


def _markdown_to_html(markdown: str) -> str:
    """Just enough Markdown for this report: headings, tables, images, lists, code blocks."""
    import re

    body, in_table, in_code = [], False, False
    image = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")
    link = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")

    def inline(text: str) -> str:
        text = html.escape(text).replace("&lt;br&gt;", "<br>")
        text = image.sub(lambda m: f'<img alt="{m[1]}" src="{m[2]}" style="max-width:420px">', text)
        return link.sub(lambda m: f'<a href="{m[2]}">{m[1]}</a>', text).replace("`", "")

    for line in markdown.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
        elif in_code:
            body.append(html.escape(line))
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table border=1 cellpadding=3>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>")
        else:
            if in_table:
                body.append("</table>")
                in_table = False
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                body.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            elif line.startswith("- "):
                body.append(f"<p>{inline(line[2:])}</p>")
            elif line.strip():
                body.append(f"<p>{inline(line)}</p>")
    if in_table:
        body.append("</table>")
    return ("<!doctype html><meta charset=utf-8><title>Denarius quickstart</title><body style='font-family:sans-serif'>\n"
            + "\n".join(body) + "\n</body>\n")


def run_quickstart(config: QuickstartConfig) -> Path:
    """Run (or resume) every stage; returns the report's path."""
    from denarius.serving.client import CoinClient

    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    _stage(1, "data", f"synthetic coins in {config.out / 'data'}")
    train, held = make_data(config)
    _stage(2, "train", f"emperor + RIC AlexNets (width {config.width}, {config.input_size} px, {config.epochs} epochs)")
    run = train_models(config, train)
    _stage(3, "export", "ONNX fp32 + INT8 + gradient graphs, temperatures, the open-set threshold, class guidebooks")
    bundle = make_bundle(config, run, train, held, make_unknown(config))
    make_guidebook(bundle, held)
    _stage(4, "serve", "gRPC server on loopback")
    server = ServerProcess(bundle, config.out / "server.log")
    try:
        with CoinClient(server.target, timeout=120) as client:
            try:
                client.wait_until_serving(timeout=120)
            except TimeoutError as error:
                raise RuntimeError(f"{error}; see {server.log_path}") from None
            info = client.model_info()
            print(f"serving {info.version} on {server.target} ({info.backend}, {info.precision})")
            _stage(5, "identify", "held-out coins and real photos through the gRPC client")
            merged = json.loads((run / "run.json").read_text()).get("merged", {})
            results = identify_and_draw(config, client, held, merged)
    finally:
        code = server.stop()
        print(f"server stopped (exit code {code}); log: {server.log_path}")
    _stage(7, "report", str(config.out / "report.md"))
    report = write_report(config, bundle, run, results, time.perf_counter() - started)
    print(f"\nreport: {report} (and {report.with_suffix('.html')}); total {time.perf_counter() - started:.0f} s")
    return report
