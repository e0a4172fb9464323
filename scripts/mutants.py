"""Mutation check: does the test suite catch the regressions its tests are named after?

Each mutant is a one-line change to the code (a known way to be wrong). For each, the
repository is copied to a scratch folder, the change applied, and the tests that should
catch it are run there. A line per mutant, starting with `caught NAME` or `missed NAME`;
the exit code is 1 if any is missed. Run with `make mutants` (not part of `make test`:
it takes several minutes). Usage: python scripts/mutants.py [NAME ...]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file to change, relative to the repository
    old: str  # text that must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files that must fail

    def apply(self, root: Path) -> None:
        target = root / self.path
        text = target.read_text(encoding="utf-8")
        if text.count(self.old) != 1:
            raise SystemExit(f"mutant {self.name}: the text to change occurs {text.count(self.old)} times "
                             f"in {self.path}; update the mutant")
        target.write_text(text.replace(self.old, self.new), encoding="utf-8")


MUTANTS = [
    Mutant("beam-no-self-reorder",  # while no sentence leaves, keep the self-attention cache in place
           "decoder/cache.py", "return replace(self, rows=rows)",
           "return self", ("tests/test_search_reference.py",)),
    Mutant("beam-reads-another-sentence-encoder",  # hypotheses grouped across sentences, not within
           "encoder_transformer/attention.py", "self.q_proj(query).reshape(B, G * Tq, D)",
           "self.q_proj(query).view(G, B, Tq, D).transpose(0, 1).reshape(B, G * Tq, D)",
           ("tests/test_search_reference.py",)),
    Mutant("repeat-guard-lets-pieces-repeat",
           "machine_translation/inference/repetition.py", '            logp[rows, start[rows]] = float("-inf")\n', "",
           ("tests/test_repetition.py",)),
    Mutant("repeat-guard-ignores-beam-parents",
           "machine_translation/inference/search.py", "beams.guard.select(parent).advance(token[:, 0])",
           "beams.guard.advance(token[:, 0])", ("tests/test_repetition.py", "tests/test_search_reference.py")),
    Mutant("learned-positions-ignore-cache-offset",
           "encoder_transformer/layers.py", "return self.learned.weight[start : start + length]",
           "return self.learned.weight[:length]", ("tests/test_decoder.py",)),
    Mutant("causal-mask-all-true",
           "encoder_transformer/masks.py", "return (k_pos <= q_pos)[None, None]",
           "return (k_pos >= 0)[None, None]", ("tests/test_decoder.py",)),
    Mutant("no-non-finite-guard",
           "machine_translation/training/trainer.py", "if not (math.isfinite(total) and torch.isfinite(grad_norm)):",
           "if False:", ("tests/test_training.py",)),
    Mutant("bf16-attention-ignores-the-mask",  # the written-out path attends to PAD and the future
           "encoder_transformer/attention.py", "    if attn_mask is not None:\n        scores = scores.masked_fill(",
           "    if False:\n        scores = scores.masked_fill(", ("tests/test_encoder_transformer.py",)),
    Mutant("buckets-pad-to-a-longer-bound",  # examples land one bucket too high: wasted PAD, shapes shift
           "machine_translation/data/sources.py", "members = np.flatnonzero((lengths > low) & (lengths <= bound))",
           "members = np.flatnonzero((lengths >= low) & (lengths < bound))",
           ("tests/test_data.py",)),
    Mutant("cosine-decays-during-warmup",  # the decay counted from the start: a slow run never reaches its peak
           "machine_translation/training/state.py",
           "progress = (budget_progress(cfg, state, steps_per_epoch) - state.decay_from) / rest if rest > 0 else 1.0",
           "progress = budget_progress(cfg, state, steps_per_epoch)", ("tests/test_training.py",)),
    Mutant("warmup-end-not-recorded",
           "machine_translation/training/trainer.py", "s.decay_from = budget_progress(c, s, self.task.steps_per_epoch())",
           "pass", ("tests/test_training.py",)),
    Mutant("bf16-autocast-disabled",
           "machine_translation/training/trainer.py", "enabled=self.autocast_dtype is not None):",
           "enabled=False):", ("tests/test_training.py",)),
    Mutant("checkpoint-in-place-and-latest-first",
           "machine_translation/training/checkpoints.py",
           "    with atomic_directory(final, replace=True) as tmp:",
           "    import contextlib\n    final.mkdir(parents=True, exist_ok=True)\n"
           "    write_atomic(root / LATEST_FILE, final.name.encode())\n    with contextlib.nullcontext(final) as tmp:",
           ("tests/test_resume.py::test_a_crash_at_every_point_of_a_checkpoint_write_leaves_a_whole_checkpoint",)),
    Mutant("torch-load-without-weights-only",
           "machine_translation/training/checkpoints.py", "map_location=device, weights_only=True)", "map_location=device)",
           ("tests/test_resume.py::test_corrupt_latest_falls_back_and_pickles_are_refused",)),
    Mutant("every-rank-writes-the-log",
           "machine_translation/training/trainer.py",
           '        if not self.dist.is_main:\n            return\n        with open(self.log_path',
           "        with open(self.log_path", ("tests/test_distributed.py",)),
    Mutant("keep-last-keeps-one-more",
           "machine_translation/training/checkpoints.py", "stale = periodic[:-keep_last] +", "stale = periodic[:-keep_last - 1] +",
           ("tests/test_resume.py::test_keep_last_leaves_exactly_k_periodic_checkpoints",)),
    Mutant("resume-forgets-the-rng",
           "machine_translation/training/trainer.py", '        set_rng_state(training["rng"])\n', "",
           ("tests/test_resume.py::test_a_signal_saves_and_resume_continues_exactly",)),
    Mutant("int8-one-scale-per-batch",  # activations quantized with one scale for the whole batch
           "machine_translation/inference/kernels.py", "x_scale = x.abs().amax(dim=1, keepdim=True)",
           "x_scale = x.abs().amax().expand(x.size(0), 1)", ("tests/test_precision.py",)),
    Mutant("int8-u8-one-scale-per-batch",  # the same in oneDNN's u8 kernel (x86 CPUs without VNNI)
           "machine_translation/inference/kernels.py", "peak = magnitude.amax(dim=1, keepdim=True)",
           "peak = magnitude.amax().repeat(x.size(0), 1)", ("tests/test_precision.py",)),
    Mutant("int8-u8-saturates",  # 8-bit inputs to the u8 kernel: its 16-bit pair sums saturate without VNNI
           "machine_translation/inference/kernels.py", "(63.0, 64)", "(127.0, 128)", ("tests/test_precision.py",)),
    Mutant("topk-forgets-the-last-block",  # the blocked top-k skips the last L mod C columns
           "machine_translation/inference/search.py", "if nb * C < L:  # the last L mod C columns", "if False:  # the last L mod C columns",
           ("tests/test_search.py",)),
    Mutant("beam-parent-without-sentence-offset",  # a candidate's parent row counted within its sentence only
           "machine_translation/inference/search.py", "parent = flat // m + torch.arange(n, device=flat.device)[:, None] * r",
           "parent = flat // m", ("tests/test_search.py", "tests/test_search_reference.py")),
    Mutant("batches-shortest-first",  # worker processes end on the longest batch while the others wait
           "machine_translation/inference/translate.py", "        batches.reverse()\n", "",
           ("tests/test_cli.py::test_the_longest_batch_is_searched_first",)),
    Mutant("overwrite-replaces-the-working-directory",  # `--out "" --overwrite` (an unset variable) empties `.`
           "machine_translation/model/outputs.py", "if where == here or where in here.parents or",
           "if", ("tests/test_outputs.py::test_overwrite_never_touches_what_it_may_not_replace",)),
    Mutant("overwrite-replaces-what-mt-did-not-write",  # --overwrite deletes a folder that never held a run
           "machine_translation/model/outputs.py", "    if not written_by_mt(out):\n        raise",
           "    if False:\n        raise", ("tests/test_outputs.py::test_overwrite_never_touches_what_it_may_not_replace",)),
    Mutant("a-run-has-no-lock",  # two `mt train` on one --out both write it
           "tokenizers/mt_tokenizers/files.py", "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
           ("tests/test_outputs.py::test_a_run_has_one_writer",)),
    Mutant("workers-outlive-their-parent",  # translate --workers: 580 MB processes left after kill -9 of the parent
           "machine_translation/inference/translate.py",
           "threading.Thread(target=_watch_parent, args=(lifeline,), daemon=True).start()", "pass",
           ("tests/test_outputs.py::test_worker_processes_end_with_their_parent",)),
    Mutant("translator-drops-the-length-penalty",  # --length-penalty, generation_config.json and the server: 1.0
           "machine_translation/inference/translate.py", "opts.beam, opts.length_penalty, opts.n_best,", "opts.beam, 1.0, opts.n_best,",
           ("tests/test_promises.py::test_the_length_penalty_divides_the_log_prob_and_changes_the_best",)),
    Mutant("translator-ignores-max-len-a",  # the output length limit forgets the user's a
           "machine_translation/inference/translate.py", "(lengths * opts.max_len_a + opts.max_len_b)",
           "(lengths * 1.5 + opts.max_len_b)", ("tests/test_promises.py::test_the_output_length_limit_is_a_times_source_plus_b",)),
    Mutant("cli-drops-the-length-penalty",  # mt translate --length-penalty does nothing
           "machine_translation/cli/translate.py", "translator.defaults.updated(beam=beam, length_penalty=length_penalty,",
           "translator.defaults.updated(beam=beam,", ("tests/test_promises.py::test_every_cli_search_flag_reaches_the_search",)),
    Mutant("server-forgets-the-model-settings",  # /v1/translate searches with the library defaults
           "machine_translation/serve/app.py", "options = model.translator.defaults.updated(beam=beam, n_best=n_best)",
           "options = type(model.translator.defaults)(beam=beam, n_best=n_best)",
           ("tests/test_promises.py::test_the_model_settings_and_request_options_reach_the_server_search",)),
    Mutant("v1-answers-in-sorted-order",  # distinct lines translated once, in sorted order: a client's lines swap
           "machine_translation/serve/app.py", "todo = [t for t in texts if t.strip()]",
           "todo = sorted(t for t in texts if t.strip())", ("tests/test_promises.py::test_the_server_answers_each_line_in_its_order",)),
    Mutant("validation-batches-are-sampled",  # subword sampling leaks into validation: noisy model selection
           "machine_translation/training/tasks.py",
           "self._val_batches = [self._batch(val, b) for b in token_batches(val.lengths, batch_tokens, 0, 0)]",
           "self._val_batches = [self._batch(val, b, sample=(0, i)) for i, b in "
           "enumerate(token_batches(val.lengths, batch_tokens, 0, 0))]",
           ("tests/test_promises.py::test_validation_is_never_sampled_whatever_the_subword_alpha",)),
    Mutant("lm-score-is-its-loss",  # mt train --task lm keeps its worst checkpoint
           "machine_translation/training/tasks.py", '"score": -val_loss}', '"score": val_loss}',
           ("tests/test_promises.py::test_each_task_scores_higher_for_the_better_model",)),
    Mutant("translation-score-is-minus-bleu",
           "machine_translation/training/tasks.py", '"score": bleu}', '"score": -bleu}',
           ("tests/test_promises.py::test_each_task_scores_higher_for_the_better_model",)),
    Mutant("trainer-keeps-the-worst",  # "higher is better" turned round in the trainer
           "machine_translation/training/trainer.py", 'if metrics["score"] > self.state.best_score:', 'if metrics["score"] < self.state.best_score:',
           ("tests/test_promises.py::test_the_trainer_keeps_the_checkpoint_with_the_highest_score",)),
    Mutant("held-out-pairs-are-trained-on",  # --src/--tgt and TSV: validation BLEU measured on training data
           "machine_translation/data/sources.py", "if (i >= first_val) == (split == \"val\"))",
           "if split == \"train\" or i >= first_val)",
           ("tests/test_promises.py::test_the_validation_pairs_of_a_corpus_are_never_trained_on",)),
    Mutant("bleu-hypotheses-and-references-swapped",  # validation BLEU without its brevity penalty
           "machine_translation/inference/evaluate.py", "BLEU().corpus_score(hypotheses, [references])",
           "BLEU().corpus_score(references, [hypotheses])", ("tests/test_promises.py::test_metrics_equal_hand_computed_values",)),
    Mutant("no-memory-check",  # a config.json with d_model 1e7 tries to allocate 40 GB
           "machine_translation/model/transformer.py", "    if need <= available:\n        return", "    if True:\n        return",
           ("tests/test_user_errors.py::test_a_config_too_large_for_memory_is_refused_before_allocating",)),
    Mutant("search-takes-a-nan-length-penalty",  # --length-penalty nan changes output, exit 0
           "machine_translation/base/options.py", 'check_finite("length_penalty", self.length_penalty)', "pass",
           ("tests/test_user_errors.py::test_nonsense_is_refused_in_one_line_before_any_work",)),
    Mutant("interrupt-checkpoint-counts-as-periodic",  # an interrupted run keeps and averages other checkpoints
           "machine_translation/training/checkpoints.py", "        if interrupted:\n            (tmp / INTERRUPTED_FILE).touch()\n",
           "", ("tests/test_resume.py::test_a_signal_saves_and_resume_continues_exactly",)),
    Mutant("a-new-run-has-random-weights",  # a run killed before validating translates with random weights
           "machine_translation/training/runs.py", "weights=False)  # no model to use until the first validation",
           "weights=True)", ("tests/test_user_errors.py::test_a_run_killed_before_its_first_validation_has_no_model_to_use",)),
    Mutant("resume-appends-after-a-torn-line",  # the log stays corrupt for ever
           "machine_translation/training/trainer.py", "        drop_torn_line(self.log_path)\n", "",
           ("tests/test_user_errors.py::test_a_torn_log_line_is_skipped_by_plot_and_cut_by_resume",)),
    Mutant("import-sinusoids-interleaved",  # Marian's positions read in mt's own layout
           "machine_translation/interchange/marian.py", 'sinusoid_layout="halves"', 'sinusoid_layout="interleaved"',
           ("tests/test_import.py::test_teacher_forced_logits_equal_the_reference",)),
    Mutant("decoder-start-masked-as-pad",  # a Marian decoder starts from PAD: masked, its first query sees nothing
           "encoder_transformer/masks.py", "    mask[:, 0] = True\n", "",
           ("tests/test_import.py::test_teacher_forced_logits_equal_the_reference",)),
    Mutant("transformers-stopping-rule-ignored",  # imported models' beams end at K finished, as mt's own
           "machine_translation/inference/search.py",
           "            done = _cannot_improve(finished, beams, cand_scores, token, eos_id, K, step, length_penalty)",
           "            done = torch.tensor([len(finished[s]) >= K for s in beams.sentence.tolist()], device=device)",
           ("tests/test_import.py::test_greedy_and_beam_outputs_equal_generate",)),
    Mutant("forced-eos-costs-its-probability",  # Hugging Face scores the EOS forced at the limit 0
           "machine_translation/inference/search.py",
           'forced = logp[at_limit] if stopping == "mt" else torch.zeros_like(logp[at_limit])',
           "forced = logp[at_limit]", ("tests/test_import.py::test_greedy_and_beam_outputs_equal_generate",)),
    Mutant("int8-assumes-relu",  # swish's negative outputs squeezed into the int8 range for ReLU's
           "encoder_transformer/layers.py",
           'self.nonnegative_inputs = ("down",) if config.activation == "relu" else ()',
           'self.nonnegative_inputs = ("down",)', ("tests/test_import.py::test_an_imported_model_quantizes_serves_and_fine_tunes",)),
    Mutant("batcher-mixes-search-settings",  # sentences with different beams share a batch
           "machine_translation/serve/batcher.py", "if item.options == first.options and (fits or not batch):",
           "if (fits or not batch):", ("tests/test_serve.py",)),
    Mutant("old-weights-stack-kv-before-q",  # a directory from before fused attention loads scrambled
           "machine_translation/model/compat.py",
           "torch.cat([tensors[n] for n in unfused_names(fused_name(name))], dim=0)",
           "torch.cat([tensors[n] for n in reversed(unfused_names(fused_name(name)))], dim=0)",
           ("tests/test_formats.py",)),
    Mutant("old-runs-resume-with-fresh-moments",  # an upgraded run forgets its optimizer's moments
           "machine_translation/model/compat.py", "if all(part is not None for part in parts):", "if False:",
           ("tests/test_formats.py",)),
    Mutant("old-configs-take-todays-defaults",  # a config.json without norm_first becomes post-norm
           "machine_translation/model/compat.py", 'MODEL_FIELDS_ADDED = {"norm_first": True,',
           'MODEL_FIELDS_ADDED = {"norm_first": False,',
           ("tests/test_checkpoint.py::test_an_old_config_json_keeps_the_old_architecture",)),
    Mutant("a-bug-is-called-the-users-mistake",  # any ValueError is exit 2, "error: ...", no traceback kept
           "machine_translation/cli/app.py", "        except (MTError, TokenizerError) as e:",
           "        except (MTError, TokenizerError, ValueError) as e:", ("tests/test_user_errors.py",)),
    Mutant("a-resumed-run-keeps-another-precision-quietly",  # resuming in another precision says nothing
           "machine_translation/training/checkpoints.py", 'if training["precision"] != precision:', "if False:",
           ("tests/test_resume.py",)),
    Mutant("paragraph-spacing-lost",  # the whitespace between sentences is not given back
           "machine_translation/text/sentences.py", "            parts += [sentence, gap]", "            parts += [sentence, \" \"]",
           ("tests/test_text.py",)),
    Mutant("urls-are-translated",  # a URL goes to the model like words
           "machine_translation/text/spans.py", '    r"\\b(?:https?|ftp)://[^\\s<>\\"\']*[^\\s<>\\"\'.,;:!?)\\]]",  # URLs, without a final stop or bracket\n',
           "", ("tests/test_text.py::test_protected_spans_survive_byte_for_byte",)),
    Mutant("a-long-line-is-truncated",  # a line over the model's positions loses its end again
           "machine_translation/text/sentences.py", "    if fits(sentence) or len(sentence) < 2:", "    if True:",
           ("tests/test_text.py::test_a_line_longer_than_the_model_is_translated_whole_not_truncated",)),
    Mutant("server-translates-paragraphs-whole",  # /translate skips the text pipeline
           "machine_translation/serve/texts.py", "pipeline.prepare(texts, TextOptions(format=fmt), model.source, fits)",
           "pipeline.prepare(texts, TextOptions(False, False, format=fmt), model.source, fits)",
           ("tests/test_serve.py::test_a_paragraph_with_protected_spans_is_translated_as_the_api_translates_it",)),
    Mutant("auto-is-always-the-first-source",  # source=auto answers from the first served model
           "machine_translation/serve/texts.py", "    if best.language in sources:\n        return best",
           "    if True:\n        return Guess(sources[0], 1.0)", ("tests/test_serve.py",)),
    # -- mt serve for the open internet (issue 41) --
    Mutant("a-lone-surrogate-is-a-500",  # JSON's lone surrogates reach the tokenizer as they are
           "machine_translation/serve/api.py", "data = _usv(parse_json(body))", "data = parse_json(body)",
           ("tests/test_serve_open.py::test_a_lone_surrogate_is_translated_as_u_fffd_everywhere",)),
    Mutant("invalid-utf8-form-read-as-replacement",  # a form body's bad bytes become U+FFFD, answered 200
           "machine_translation/serve/api.py", 'return raw.decode("utf-8")\n', 'return raw.decode("utf-8", "replace")\n',
           ("tests/test_serve_open.py::test_invalid_utf8_is_a_400_in_every_form_encoding",)),
    Mutant("over-queue-request-is-503",  # a request larger than the queue is told to retry
           "machine_translation/serve/app.py", "if len(sentences) > self.options.queue_size:", "if False:",
           ("tests/test_serve.py::test_a_full_queue_and_a_timeout_are_503_with_retry_after_a_request_over_the_queue_413",)),
    Mutant("no-head-deadline",  # a connection that sends nothing stays open
           "machine_translation/serve/server.py", "            super().connection_made(transport)\n            self._arm()",
           "            super().connection_made(transport)",
           ("tests/test_serve_open.py::test_stalled_clients_are_closed_within_the_timeout_while_others_are_served",)),
    Mutant("no-body-deadline",  # a body that stops is waited for forever
           "machine_translation/serve/api.py", "await asyncio.wait_for(read(), timeout)", "await read()",
           ("tests/test_serve_open.py::test_stalled_clients_are_closed_within_the_timeout_while_others_are_served",)),
    Mutant("a-500-logged-twice",  # the catch-all answers and re-raises: uvicorn logs a second traceback
           "machine_translation/serve/observe.py",
           '                await JSONResponse({"error": "Internal server error"}, 500)(scope, receive, send)',
           '                await JSONResponse({"error": "Internal server error"}, 500)(scope, receive, send)\n'
           '            raise', ("tests/test_serve_open.py::test_one_access_line_per_request_and_one_traceback_per_500",)),
    Mutant("no-access-log",  # requests leave no line
           "machine_translation/serve/observe.py", "            if self.access_log:", "            if False:",
           ("tests/test_serve_open.py::test_one_access_line_per_request_and_one_traceback_per_500",)),
    Mutant("metrics-lose-the-route",  # every request counted under "other"
           "machine_translation/serve/metrics.py",
           'route = scope["path"] if scope["path"] in self.routes else "other"', 'route = "other"',
           ("tests/test_serve_open.py::test_metrics_count_a_known_sequence_of_requests",)),
    Mutant("suggestions-overwrite-the-file",  # the file is emptied when the server starts
           "machine_translation/serve/suggest.py", "os.O_WRONLY | os.O_APPEND | os.O_CREAT",
           "os.O_WRONLY | os.O_CREAT | os.O_TRUNC",
           ("tests/test_serve_open.py::test_suggest_appends_each_suggestion_and_is_403_when_off",)),
    Mutant("batches-run-on-the-batcher-thread",  # a second thread calls torch: its own OpenMP team, 2x slower
           "machine_translation/serve/server.py", "runner.call(tr.translations, texts, opts,",
           "(lambda fn, *args: fn(*args))(tr.translations, texts, opts,",
           ("tests/test_serve_open.py::test_all_model_work_runs_on_one_thread",)),
    Mutant("answers-wait-for-their-whole-batch",  # the short sentences of a batch wait for its longest
           "machine_translation/serve/batcher.py", "            told.add(i)\n            _send(batch[i], result)\n",
           "            pass\n",
           ("tests/test_serve.py::test_a_sentence_is_answered_when_its_translation_ends_not_its_batch",)),
    Mutant("beam-search-tells-only-the-last-sentences",  # sentences that end early are told at the end, or never
           "machine_translation/inference/search.py",
           "        if on_end is not None:\n            for s in beams.sentence[done].tolist():",
           "        if on_end is not None and done.all():\n            for s in beams.sentence[done].tolist():",
           ("tests/test_search.py::test_each_sentence_is_told_the_step_it_ends_with_its_final_n_best",
            "tests/test_serve.py::test_a_sentence_is_answered_when_its_translation_ends_not_its_batch")),
    Mutant("told-translation-of-another-sentence",  # a batch's row, not the sentence's place in the input
           "machine_translation/inference/translate.py", "lambda j, h, b=b: on_end(b[j], h)", "lambda j, h, b=b: on_end(j, h)",
           ("tests/test_serve.py::test_a_sentence_is_answered_when_its_translation_ends_not_its_batch",)),
    Mutant("one-sentence-shortcut-misses-list-items",  # "a) one b) two" is not given to pysbd
           "machine_translation/text/sentences.py", 'BOUNDARIES = ".!?…;:)', 'BOUNDARIES = ".!?…;:',
           ("tests/test_text.py::test_the_one_sentence_shortcut_gives_what_pysbd_gives",)),
    Mutant("access-log-lines-forgeable",  # a path's decoded %0A starts a forged line in the log
           "machine_translation/serve/observe.py", "fields[\"method\"], _printable(target), fields[\"protocol\"]",
           "fields[\"method\"], target, fields[\"protocol\"]",
           ("tests/test_serve_open.py::test_a_client_cannot_forge_access_log_lines",)),
    Mutant("inline-tags-stay-at-source-positions",  # tags put back where they were, not where the words went
           "machine_translation/text/marks.py", "else _cluster([target(w) for w in range(first, end + 1)])",
           "else list(range(first, end + 1))",
           ("tests/test_markup.py::test_inline_tags_go_around_the_words_they_were_translated_into",)),
    Mutant("crossing-tags-not-reopened",  # crossing alignments give crossed, invalid tags
           "machine_translation/text/marks.py",
           'closes += "".join(a.close for a in reversed(above)) + e.close + "".join(a.open for a in above)',
           "closes += e.close",
           ("tests/test_markup.py::test_crossing_alignments_still_give_well_nested_tags",)),
    Mutant("pre-content-translated",  # (script and style content the tokenizer already keeps raw)
           "machine_translation/text/markup.py", 'RAW = frozenset({"script", "style", "pre", "textarea", "template"})',
           'RAW = frozenset({"script", "style", "textarea", "template"})',
           ("tests/test_markup.py::test_everything_that_is_not_text_is_copied_byte_for_byte",)),
    Mutant("translate-no-ignored",  # an element marked translate="no" is translated anyway
           "machine_translation/text/markup.py", "(tag not in VOID and NO_TRANSLATE.search(raw))", "False",
           ("tests/test_markup.py::test_what_its_author_marked_not_to_translate_stays_as_written",)),
    Mutant("translated-html-text-unescaped",  # "3 < 4" comes back as a broken tag
           "machine_translation/text/markup.py", "    return html.escape(text, quote=False)", "    return text",
           ("tests/test_markup.py::test_everything_that_is_not_text_is_copied_byte_for_byte",)),
    Mutant("unfinished-tag-translated",  # a page ending inside "<p class=" has it translated as words
           "machine_translation/text/markup.py", '    unfinished = re.search(r"<[A-Za-z/!?][^>]*\\Z", markup)',
           "    unfinished = None",
           ("tests/test_markup.py::test_everything_that_is_not_text_is_copied_byte_for_byte",)),
    Mutant("closing-tag-after-the-stop-left-alone",  # "<b>All of it.</b>": the splitter sets "</b>" apart
           "machine_translation/inference/pipeline.py", "            pieces, gaps = _spans_stay(pieces, gaps)\n", "",
           ("tests/test_markup.py::test_inline_tags_go_around_the_words_they_were_translated_into",)),
    Mutant("batched-alignment-reads-padding",  # a shorter source's weights taken from the padded columns
           "machine_translation/inference/alignment.py", "weights[b, : len(t) + 1, : len(s)]",
           "weights[b, : len(t) + 1, -len(s):]",
           ("tests/test_markup.py::test_alignments_in_a_batch_equal_alignments_one_at_a_time",)),
    Mutant("docx-runs-out-of-order",  # each piece to the run the alignment chose, so runs' text is reordered
           "machine_translation/text/documents.py", "zip(pieces, _runs_of(pieces, count))",
           "zip(pieces, [run for run, _ in pieces])",
           ("tests/test_documents.py::test_runs_stay_in_order_and_a_run_keeps_the_words_the_alignment_gave_it",)),
    Mutant("subtitles-renumbered",
           "machine_translation/text/documents.py", "srt.compose(cues, reindex=False)", "srt.compose(cues)",
           ("tests/test_documents.py::test_subrip_keeps_its_cues_numbers_and_timings_and_translates_each_cue_whole",)),
    Mutant("output-may-be-the-input",  # the source document overwritten by its translation
           "machine_translation/cli/translate.py", "output.exists() and output.resolve() == input_file.resolve()",
           "False", ("tests/test_documents.py::test_the_output_is_never_the_input_and_a_docx_needs_an_output_file",)),
    Mutant("uploads-bounded-by-the-body-limit",  # one limit for both: documents capped at 1 MB, or bodies at 10
           "machine_translation/serve/files.py", "options.max_file_bytes, options.body_timeout",
           "options.max_body_bytes, options.body_timeout",
           ("tests/test_serve_files.py::test_uploads_have_their_own_size_limit_and_can_be_turned_off",)),
    Mutant("files-ignore-the-char-limit",
           "machine_translation/serve/files.py", "if document.characters > options.char_limit:", "if False:",
           ("tests/test_serve_files.py::test_bad_uploads_are_libretranslates_400s",)),
    Mutant("translated-files-never-expire",
           "machine_translation/serve/files.py", "expires <= now:  # added in order", "expires < 0:  # added in order",
           ("tests/test_serve_files.py::test_the_store_expires_files_and_keeps_within_its_bytes",)),
    Mutant("export-keeps-mts-sinusoid-layout",  # interleaved sin/cos read by Marian as halves
           "machine_translation/interchange/export.py",
           "return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])",
           "return torch.arange(d_model)", ("tests/test_export.py::test_transformers_gives_the_same_logits_ids_and_greedy_output",)),
    Mutant("import-starts-exports-from-pad",  # an exported model's <bos> start ignored on the way back
           "machine_translation/interchange/marian.py",
           "start = next((p for p, i in tgt_vocab.items() if i == start_id and p != specials[2]), None)", "start = None",
           ("tests/test_export.py::test_export_then_import_translates_identically",)),
    Mutant("ctranslate2-builds-its-own-positions",  # the trap: no table given, CTranslate2's own layout and offset
           "machine_translation/interchange/ct2.py",
           '        stack.position_encodings.encodings = state.get(f"{side}.embed.position.learned.weight", table)\n', "",
           ("tests/test_export.py::test_ctranslate2_translates_as_mt_does",)),
    Mutant("engine-uses-a-stale-copy",  # MODEL/ctranslate2 made from other weights searched with
           "machine_translation/interchange/export.py", 'return found.get("weights_sha256") == digest and found',
           "return found", ("tests/test_export.py::test_engine_ctranslate2_in_translate_and_evaluate",)),
    Mutant("export-cannot-overwrite-its-own",
           "machine_translation/model/outputs.py",
           "if (directory / RUN_MARKER).is_file() or (directory / EXPORT_MARKER).is_file():",
           "if (directory / RUN_MARKER).is_file():",
           ("tests/test_export.py::test_bad_flags_and_an_existing_out_are_one_line",)),
    Mutant("engine-server-uses-one-translator",  # --workers 2 with CTranslate2: one batch per call, one core idle
           "machine_translation/inference/translate.py", "return cls(loaded, dev, workers, plan, engine)",
           "return cls(loaded, dev, 1 if engine else workers, plan, engine)",
           ("tests/test_export.py::test_engine_ctranslate2_server_keeps_every_translator_busy",)),
    Mutant("nagle-on-kept-alive-connections",  # answers after a connection's first wait for the delayed ACK
           "machine_translation/serve/server.py", "sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)",
           "sock = socket.socket(info[0], socket.SOCK_STREAM)",
           ("tests/test_serve_open.py::test_answers_on_a_kept_alive_connection_are_sent_at_once",)),
    Mutant("argos-source-without-eos",  # Argos passes the pieces alone: the model never sees the end of the source
           "machine_translation/interchange/argos.py", "source_eos=True", "source_eos=False",
           ("tests/test_export_argos.py::test_argos_installs_the_package_and_translates_as_mt_does",)),
    Mutant("argos-package-without-its-splitter",  # Argos then looks for spaCy's downloaded model, offline
           "machine_translation/interchange/argos.py", 'splitter(spacy, source).to_disk(folder / "spacy")',
           "splitter(spacy, source)",
           ("tests/test_export_argos.py::test_argos_installs_the_package_and_translates_as_mt_does",)),
    Mutant("argos-overwrites-a-users-file",
           "machine_translation/interchange/argos.py", "    if not written_by_mt(out):", "    if False:",
           ("tests/test_export_argos.py::test_bad_packages_are_one_line_and_nothing_is_lost",)),
]


def scratch_copy(root: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)


def run(mutant: Mutant, data_dir: str) -> tuple[bool, float]:
    """True if the tests fail with the mutant in place (it is caught)."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = Path(tmp)
        scratch_copy(root)
        mutant.apply(root)
        # The copy's packages come first on the path (for pytest and for the training
        # subprocesses the tests start), ahead of the editable install of the real repository.
        # (`mt_tokenizers` sits in the plain folder `tokenizers/`, hence the second entry.)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tokenizers")]),
               "MT_DATA_DIR": data_dir}
        check = subprocess.run([sys.executable, "-c", "import machine_translation, decoder, mt_tokenizers; "
                                "print(machine_translation.__file__, decoder.__file__, mt_tokenizers.__file__)"],
                               cwd=root, env=env, capture_output=True, text=True)
        if check.stdout.count(str(root)) != 3:
            raise SystemExit(f"the scratch copy is not what Python imports: {check.stdout or check.stderr}")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *mutant.tests], cwd=root, env=env, capture_output=True, text=True)
        return result.returncode != 0, time.perf_counter() - start


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    unknown = set(names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for mutant in chosen:  # every mutant still applies, before minutes are spent on the others
        text = (REPO / mutant.path).read_text(encoding="utf-8")
        if text.count(mutant.old) != 1:
            raise SystemExit(f"mutant {mutant.name}: the text to change occurs {text.count(mutant.old)} times in "
                             f"{mutant.path}; update the mutant")
    data_dir = os.environ.get("MT_DATA_DIR") or str(REPO.parent / "shared" / "data")
    missed = 0
    for mutant in chosen:
        caught, seconds = run(mutant, data_dir)
        missed += not caught
        print(f"{'caught' if caught else 'missed'} {mutant.name} ({seconds:.0f} s: {' '.join(mutant.tests)})",
              flush=True)
    print(f"{len(chosen) - missed} caught, {missed} missed", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
