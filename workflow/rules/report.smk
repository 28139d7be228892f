# The paper's figures and tables, each its own target: FIGURES and TABLES below, one entry and one rule each.


report: "../report/workflow.rst"


# the files the figures and tables read, one per task
CURVES = per_task("prune/{task}/curve.csv")
ACTUALS = per_task("prune/{task}/actual.json")
PREDICTIONS = per_task("theory/{task}/prediction.json")
SCALINGS = per_task("theory/{task}/magnitude_scaling.json")
SPECTRA = per_task("hessian/{task}/slq.npz")
ITERATIVE_CURVES = per_task("prune/{task}/iterative.csv", ITERATIVE_TASKS)
# Rare Gems runs on every iterative task (the baseline rule serves any task), so Fig. 4 (bottom)
# compares like with like even when the iterative task is not among baselines.tasks.
RARE_GEMS_TASKS = ITERATIVE_TASKS if "rare_gems" in BASELINE_METHODS else []
RARE_GEMS_FILES = [
    f"{RESULTS}/baselines/rare_gems/{t}/s{tag}_seed{seed}.json"
    for t in RARE_GEMS_TASKS
    for tag in SPARSITY_TAGS
    for seed in SEEDS
]
# weight histograms: the model the theory uses first, then the other variants (dense)
WEIGHT_VARIANTS = [THEORY_VARIANT] + [v for v in VARIANTS if v != THEORY_VARIANT]
TRAINED = [trained(t, v) for t in TASKS for v in WEIGHT_VARIANTS]
SLQ_SETTINGS = {
    "n_bins": {t: SETTINGS.hessian(t).n_bins for t in TASKS},
    "sigma2": {t: SETTINGS.hessian(t).sigma2 for t in TASKS},
}


# The figures, one entry each: figure(report labels, paper figure, entry, caption, the params its draw
# function reads, its inputs). Rule fig_<name> runs scripts/figure.py, which calls the entry,
# prunelimit.figures.<module>:draw_<name> (it reads the inputs and calls plot_<name> beside it), and logs the
# numbers drawn; the report shows the caption (reStructuredText) through workflow/report/figure.rst. Config
# values in a caption are formatted here. The caption is a param, so editing it reruns its figure (params are
# a rerun trigger): a redraw of seconds, from files already there.
FIGURES = {
    "pruning_curves": figure(
        "pruning curves",
        "Fig. 3",
        "prunelimit.figures.pruning_curves:draw_pruning_curves",
        rf"""
        Pruning curves (paper Fig. 3). For each task, the L1-trained model is pruned one-shot by global
        magnitude at every sparsity i/{config['prune']['grid']} of the grid (fraction of
        prunable weights removed; the top axis gives the density, the fraction kept), with no retraining.
        Top panels: test loss divided by the unpruned model's test loss (log scale when it spans a decade);
        bottom panels: test accuracy (dash-dotted: the unpruned accuracy). Vertical lines: the predicted
        threshold s* (solid red, fixed point s = w²(R(s))/D of the Gaussian-width theory), the kinematic
        bounds (dashed, shaded between) and the actual threshold by the official criterion (dotted black:
        scanning down from the largest sparsity, the first whose test accuracy is strictly above the
        unpruned model's; where no pruned model beats it, the largest sparsity that keeps its accuracy).
        Faint lines on the accuracy panels: the claim test's other training seeds (accuracy curve, predicted
        and actual threshold); the title gives mean ± sd over every seed. Where the solid and dotted lines part, the prediction misses the measured limit; the table "theory
        vs actual" gives the numbers, and the threshold at each accuracy tolerance.
        """,
        {
            "tasks": TASKS,
            "claim": claim_seed_params(),
            "own_seed": {t: task_seed(t) for t in TASKS},
        },
        curve=CURVES,
        actual=ACTUALS,
        prediction=PREDICTIONS,
        seed_curve=claim_files("curve.csv"),
        seed_prediction=claim_files("prediction.json"),
        seed_actual=claim_files("actual.json"),
    ),
    "theory_vs_actual": figure(
        "prediction curve vs actual",
        "Fig. 5",
        "prunelimit.figures.theory_vs_actual:draw_theory_vs_actual",
        rf"""
        Prediction curve against the actual curve (paper Fig. 5). x: projection distance R between the
        trained weights and their magnitude-pruned copy (log scale); y: sparsity (fraction removed). Blue:
        the normalised squared Gaussian width w²(R)/D of the loss sublevel set seen from distance R, from the
        SLQ spectrum with the zero-eigenvalue mass f₀ (shaded: the band of the kinematic bounds, η =
        {config['theory']['eta']}); purple dashed: the same from the exact eigenvalues, where the
        model is small enough; grey dotted: the official code's estimate on the Gaussian-smoothed density.
        Orange: the curve (R(s), s) of global magnitude pruning. Their crossing (red dot) is the predicted
        threshold; the black diamond marks the actual threshold measured by the pruning sweep on the orange
        curve.
        """,
        {"tasks": TASKS},
        prediction=PREDICTIONS,
        actual=ACTUALS,
    ),
    "iterative_threshold": figure(
        "iterative threshold",
        "Fig. 4 (top)",
        "prunelimit.figures.iterative_pruning:draw_iterative_threshold",
        rf"""
        Theoretical threshold along iterative pruning (paper Fig. 4, top). Round 0 is the trained L1 model;
        each later round prunes the current model (global magnitude among surviving weights) to the
        threshold predicted in the previous round, retrains it {config['iterative']['retrain_epochs']}
        epochs under the mask and recomputes the prediction (new SLQ spectrum, Hessian rows and ε). Solid:
        the threshold predicted after each round (kinematic bounds shaded); dashed, hollow markers: the
        sparsity the model was pruned to in that round. Blue circles: retraining without l2; orange
        triangles: with l2 weight decay
        {config['iterative']['l2']}. All values are sparsities (fraction removed).
        """,
        {"tasks": ITERATIVE_TASKS, "l2": SETTINGS.iterative.l2},
        iterative=ITERATIVE_CURVES,
    ),
    "l2_vs_rare_gems": figure(
        "with vs without l2, Rare Gems",
        "Fig. 4 (bottom)",
        "prunelimit.figures.iterative_pruning:draw_l2_vs_rare_gems",
        rf"""
        With and without l2, against Rare Gems (paper Fig. 4, bottom). Test accuracy against sparsity
        (fraction removed) of the models after each iterative-pruning round (one marker per round, round 0
        the unpruned model), retrained without l2 (blue circles) and with l2 weight decay
        {config['iterative']['l2']} (orange triangles); dotted verticals: the final
        theoretical threshold of each arm. l2 shrinks the weights and so the projection distance R, which
        moves the predicted threshold to higher sparsity. Green diamonds: Rare Gems at its target
        sparsities (mean ± std over seeds {config['baselines']['seeds']}; it applies l2 to its
        scores), run on the same task. Grey: the one-shot LOMP curve of the same
        model (no retraining), for reference.
        """,
        {"tasks": ITERATIVE_TASKS, "l2": SETTINGS.iterative.l2},
        iterative=ITERATIVE_CURVES,
        curve=per_task("prune/{task}/curve.csv", ITERATIVE_TASKS),
        rare_gems=RARE_GEMS_FILES,
    ),
    "hessian_row_l1": figure(
        "Hessian row L1 norms",
        "Fig. 6",
        "prunelimit.figures.hessian:draw_hessian_row_l1",
        rf"""
        Hessian row L1 norms (paper Fig. 6). At {config['theory']['row_levels']} sparsity
        levels the weight at the magnitude-pruning threshold is taken, and the L1 norm of its row of the
        full-training-set Hessian (over the prunable weights) is computed by a Hessian-vector product with
        a basis vector. x: that weight's magnitude rank, as the percentage of prunable weights with a
        smaller magnitude \|w\|; y: the row's L1 norm (log scale). Rows below
        {config['theory']['zero_row_threshold']} (dashed) count as zero eigen-directions; their
        fraction f₀ is the zero-eigenvalue mass the theory adds to the SLQ spectrum, which SLQ cannot
        resolve (triangles; a row of exactly zero is drawn at the bottom of the axis).
        """,
        {"tasks": TASKS},
        rows=per_task("hessian/{task}/hessian_rows.npz"),
    ),
    "magnitude_scaling": figure(
        "weight-magnitude scaling",
        "Fig. 7",
        "prunelimit.figures.weight_magnitude:draw_magnitude_scaling",
        rf"""
        Threshold against weight magnitude (paper Fig. 7). The prunable weights are multiplied by c =
        {config['theory']['scales']}. Black: the prediction curve w²(R)/D (spectrum and ε of
        the unscaled model, as in the paper's figure); coloured: the magnitude-pruning curves (c·R(s), s)
        of the scaled weights. Filled circles: their crossings, the predicted thresholds; hollow diamonds:
        the actual thresholds of the scaled models (one-shot pruning sweep, largest sparsity keeping the
        scaled model's unpruned test accuracy). x: projection distance R (log); y: sparsity (fraction
        removed). Larger weights move the crossing to lower sparsity.
        """,
        {"tasks": TASKS},
        scaling=SCALINGS,
    ),
    "weight_distribution": figure(
        "weight distribution",
        "Figs. 2 and 8",
        "prunelimit.figures.weight_magnitude:draw_weight_distribution",
        r"""
        Weight distribution and the threshold against weight magnitude (paper Figs. 2 and 8). Top: histogram
        (probability density) of log₁₀\|w\| of the prunable weights of the L1-trained model (filled) and of
        the model trained without L1 (line); vertical lines mark the magnitude below which global magnitude
        pruning removes weights at the predicted threshold (red) and at the actual threshold (dotted black).
        Bottom: predicted threshold (kinematic bounds shaded) and actual threshold, as sparsity (fraction
        removed), against the factor c the weights were scaled by (the magnitude-scaling experiment).
        """,
        {"tasks": TASKS, "variants": WEIGHT_VARIANTS},
        model=[files["model"] for files in TRAINED],
        metrics=[files["metrics"] for files in TRAINED],
        prediction=PREDICTIONS,
        actual=ACTUALS,
        scaling=SCALINGS,
    ),
    "hessian_spectrum": figure(
        "Hessian spectrum (SLQ)",
        "diagnostic (no paper figure)",
        "prunelimit.figures.hessian:draw_hessian_spectrum",
        rf"""
        Hessian eigenvalue spectra of the L1-trained models, one panel per task. The training-loss Hessian
        over the prunable weights is estimated by stochastic Lanczos quadrature
        ({config['hessian']['n_runs']} Rademacher run(s), from {config['hessian']['n_iter']}
        Lanczos steps doubled to convergence, by default; the SLQ table lists each task's settings). Blue:
        the Gaussian-smoothed density (kernel variance
        {config['hessian']['sigma2']}·max(1, λmax − λmin), as in PyHessian and the official
        code) on a log axis; red ticks: the Ritz nodes, taller for larger quadrature weight; purple dashed:
        the same smoothing of the exact eigenvalues, for models with at most
        {config['hessian']['exact_max_params']} prunable weights. The theory integrates
        against the raw nodes and weights, not against the smoothed curve.
        """,
        {"tasks": TASKS, "exact_tasks": EXACT_TASKS, **SLQ_SETTINGS},
        slq=SPECTRA,
        exact=per_task("hessian/{task}/exact.npz", EXACT_TASKS),
    ),
    "regime_map": figure(
        "regime map: predicted vs actual limit across L1 strength",
        "beyond the paper",
        "prunelimit.figures.regime_map:draw_regime_map",
        rf"""
        The regime map (beyond the paper): where the pruning-limit prediction holds as the L1 strength varies. Each panel is
        one task, retrained with λ = m × its own L1 coefficient (m in {', '.join(str(m) for m in config['regime']['l1_multipliers'])}).
        x: the L1 shrinkage λ·Σ lr each model reached (log scale); the λ = 0 model, whose shrinkage 0 a log axis cannot place,
        is drawn at the left edge, a factor 6 below the smallest positive shrinkage, its tick labelled "0" and set off by a
        white gap marked "//" on the axis. The dashed vertical line marks the task's own λ (the paper's shrinkage, 0.0391
        for FC nets). Each panel's title says which spectrum the prediction came from (exact for small D, else SLQ).
        y: sparsity (fraction of prunable weights removed). Orange-red circles: the predicted threshold s* (the exact Hessian
        spectrum for small models, else SLQ), the orange band its kinematic bounds. Black squares: the actual threshold of
        one-shot global magnitude pruning by the official criterion (largest sparsity with test accuracy strictly above the
        unpruned model's; tolerance 0 where no pruned model beats it); the blue band spans the thresholds at the smallest
        and largest accuracy tolerance ({config['prune']['tolerances'][0]} to
        {config['prune']['tolerances'][-1]}). Green triangles: the share of weights with \|w\| < 1e-3. Where the orange-red
        and black lines part, the prediction misses; the table "regime map" gives every number.
        """,
        {},
        table=f"{RESULTS}/tables/regime_map.csv",
    ),
    "lomp_vs_sota": figure(
        "LOMP vs MP, WF, CBS, CHITA (one shot)",
        "appendix table, drawn",
        "prunelimit.figures.lomp_vs_sota:draw_lomp_vs_sota",
        """
        LOMP against MP, WF, CBS and CHITA, one shot with no retraining (the paper's appendix table, drawn). One
        panel per task. x: sparsity (fraction of prunable weights removed); y: test accuracy (%), mean over the
        training seeds with their sd as error bars. Colour: the method; solid lines prune the L1-trained model
        (solid MP is LOMP), dashed lines the dense model. Dotted grey: the unpruned dense model. The vertical
        red line marks the predicted pruning limit of the L1 model (the theory stage's prediction, the task's own
        training seed). The table "LOMP vs MP, WF, CBS, CHITA" gives every number and each method's time.
        """,
        {"tasks": ONESHOT_TASKS},
        results=ONESHOT_RESULTS,
        prediction=per_task("theory/{task}/prediction.json", ONESHOT_TASKS),
    ),
}


for _name, _figure in FIGURES.items():

    rule:
        name:
            f"fig_{_name}"
        input:
            **_figure["input"],
        output:
            pdf=f"{RESULTS}/figures/{_name}.pdf",
            png=report(
                f"{RESULTS}/figures/{_name}.png",
                caption="../report/figure.rst",
                category="Figures",
                labels=_figure["labels"],
            ),
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{_name}.tsv"
        localrule: True
        conda:
            "../../envs/plot.yaml"
        params:
            **_figure["params"],
            entry=_figure["entry"],
            caption=_figure["caption"],
        script:
            "../../scripts/figure.py"


# The tables, one entry each: table(report labels, paper table, entry, caption, the params its entry reads, its
# inputs). Rule table_<name> runs scripts/table.py, which calls the entry,
# prunelimit.table_inputs:<name>_from_files (it reads the inputs and returns the table, built by
# prunelimit.tables or prunelimit.claim), and writes the table as .csv, .md, booktabs .tex and the HTML page the
# report shows (titled "<label> (paper: <paper>)"), through workflow/report/table.rst for the caption. As for the
# figures, config values in a caption are formatted here, and the caption is a param.
TABLES = {
    "training": table(
        "training",
        "training hyperparameters table",
        "prunelimit.table_inputs:training_from_files",
        r"""
        Training table (paper: training hyperparameters table): per task and variant (dense, L1), the
        architecture, parameter counts, the recipe actually used (epochs, lr, schedule, warm-up, λ, batch),
        the L1 regime it reached (l1_shrinkage = λ·Σ_t lr_t, the paper's recipes give about 0.04 for FC nets
        and 0.08 for VGG16; small_weight_share: the share of prunable weights with \|w\| < 1e-3, and its
        net change over the last tenth of the epochs; never_updated_share: weights that never received a
        gradient of the data loss; never_updated_kept_share: those still at \|w\| ≥ 1e-3 at the end), the train and test accuracy, ε (per-batch training-loss spread over the
        training loader) and wall time.
        """,
        {},
        metrics=expand(
            f"{RESULTS}/train/{{task}}/{{variant}}/metrics.json",
            task=TASKS,
            variant=VARIANTS,
        ),
    ),
    "tv_distance": table(
        "TV distance",
        "TV-distance table",
        "prunelimit.table_inputs:tv_distance_from_files",
        r"""
        Total-variation distance between the weight distributions (histograms of the prunable weights over
        a common grid) of independently seeded L1-regularised training runs of the same task (paper: TV
        distance table). Small values mean the magnitude profile, and so the predicted pruning limit, is a
        property of the recipe rather than of one run.
        """,
        {
            "tasks": TV.tasks,
            "seeds": TV.seeds,
            "bins": TV.bins,
            "base_seed": config["train_defaults"]["seed"],
        },
        reference=per_task("train/{task}/l1/model.pt", TV.tasks),
        reseeded=expand(
            f"{RESULTS}/train/{{task}}/l1_seed{{seed}}/model.pt",
            task=TV.tasks,
            seed=TV.seeds,
        ),
    ),
    "lomp_vs_baselines": table(
        "LOMP vs baselines",
        "LOMP vs baselines tables",
        "prunelimit.table_inputs:lomp_vs_baselines_from_files",
        r"""
        LOMP against the baselines (paper: tables "LOMP vs dense, Rare Gems, IMP, Smart-Ratio"): top-1 test
        accuracy (%) per task and sparsity (fraction of prunable weights removed). "dense" is the dense
        model; LOMP is the L1-trained model one-shot magnitude pruned with no retraining (read from each
        training seed's one-shot sweep, which evaluates exactly this); IMP (rewinding, exact per-target
        round schedule), Rare Gems (score training on signed constants, then fine-tuning) and Smart-Ratio
        (random layer-wise masks, trained from scratch). Cells read "mean ± sd (number of seeds)". The
        "training epochs" row states what each method trained, in epochs of the task's recipe: every
        method gets the epochs of the L1 model LOMP prunes (IMP that many every round).
        """,
        {
            "methods": BASELINE_METHODS,
            "lomp": claim_seed_params(LOMP_TASKS),
            "lomp_epochs": {
                t: int(task_spec(config, t, THEORY_VARIANT)["train"]["epochs"])
                for t in LOMP_TASKS
            },
            "sparsities": list(SPARSITY_TAGS.values()),
        },
        results=BASELINE_RESULTS,
        lomp_curves=claim_files("curve.csv", LOMP_TASKS),
        dense=[
            trained(t, "dense")["metrics"]
            for t in BASELINE_TASKS
            if "dense" in VARIANTS
        ],
    ),
    "bounds_gap": table(
        "bounds gap",
        "bounds-gap table",
        "prunelimit.table_inputs:bounds_gap_from_files",
        rf"""
        Kinematic bounds and their gap Δ (paper: bounds-gap table). Per task: D prunable weights, the loss
        tolerance ε (per-batch training-loss std), the zero-eigenvalue fraction f₀ from the Hessian rows,
        and, as sparsities (fraction removed), the lower bound, the predicted threshold, the upper bound and
        Δ = upper − lower (η = {config['theory']['eta']}; our derivation from the approximate
        kinematic formula). The exact_* columns repeat the computation with the exact Hessian eigenvalues
        (same ε, R(s) and f₀) where the model is small enough; slq_minus_exact is the SLQ quadrature error of
        the predicted threshold. Empty cells: no exact spectrum for that task.
        """,
        {"tasks": TASKS},
        prediction=PREDICTIONS,
    ),
    "theory_vs_actual": table(
        "theory vs actual",
        "theoretical vs actual table",
        "prunelimit.table_inputs:theory_vs_actual_from_files",
        rf"""
        Theoretical against actual pruning threshold (paper: theoretical vs actual table) over the claim
        test's training seeds ({config['claim_seeds']}), in sparsity (fraction of prunable
        weights removed). Per task one row per training seed (each seed's L1 model trained with the same
        recipe, its own Hessian rows, SLQ spectrum, prediction and one-shot sweep), then a "mean" and an
        "sd" row (sample standard deviation over the seeds). predicted_sparsity: the Gaussian-width fixed
        point from the SLQ spectrum; predicted_at_eps_p10 / _p90: the same at the 10th and 90th percentile
        of ε over random batch partitions of the training set (the ε band). actual_sparsity: one-shot global
        magnitude pruning of the same model on the 0.1% grid by the official criterion (the largest sparsity
        whose accuracy is strictly above the unpruned model's; tolerance 0 where that is undefined);
        actual_tol_*: at each accuracy tolerance. difference = predicted − actual; density_error =
        (predicted density − actual density) / actual density, the error in the paper's unit (fraction
        kept). naive_sparsity: the share of prunable weights with \|w\| < 1e-3, the naive predictor;
        theory_beats_naive: whether the prediction lies closer to the actual limit than it. verdict (mean
        row): "agrees" when the mean difference lies within two standard errors of 0, or within the actual
        limit's own seed-to-seed sd; otherwise by how much the prediction misses. bounds_verdict: the
        kinematic bounds. A miss is reported as measured, not tuned away.
        """,
        claim_seed_params(),
        prediction=claim_files("prediction.json"),
        actual=claim_files("actual.json"),
        metrics=claim_files("metrics.json"),
    ),
    "slq": table(
        "SLQ settings",
        "SLQ hyperparameter table",
        "prunelimit.table_inputs:slq_from_files",
        r"""
        SLQ settings (paper: SLQ hyperparameter table), read from each spectrum file (how it was actually
        made) and the config: the parameter set and its dimension D, training samples, Rademacher runs,
        Lanczos iterations per run (and the fewest steps any run took before a breakdown), bins of the
        smoothed density, the kernel-variance factor σ² and the variance used, σ²·max(1, λmax − λmin), the
        extreme Ritz values, Hessian-vector products and seconds.
        """,
        {**SLQ_SETTINGS, "tasks": TASKS},
        slq=SPECTRA,
    ),
    "regime_map": table(
        "regime map",
        "beyond the paper: limit across L1 strength",
        "prunelimit.table_inputs:regime_map_from_files",
        rf"""
        The regime map as numbers (beyond the paper): for each task of regime.tasks
        ({', '.join(str(t) for t in config['regime']['tasks'])}), one row per model retrained with λ = l1_multiplier × the
        task's own L1 coefficient (multipliers {', '.join(str(m) for m in config['regime']['l1_multipliers'])}; the rest of
        the recipe unchanged). l1_shrinkage = λ·Σ lr over the run (how far L1 alone pulls a weight; the paper's FC5 recipe
        gives 0.0391), small_weight_share = the share of prunable weights with \|w\| < 1e-3 at the end, and its net change
        over the last tenth of the epochs (small_share_drift_last_tenth: not small means the model was not at equilibrium).
        dense_test_acc is the multiplier-0 model's test accuracy, test_acc the model's own. predicted_sparsity with
        lower/upper_sparsity (kinematic bounds) comes from the theory rule on that model: from the exact Hessian spectrum
        where D ≤ hessian.exact_max_params (spectrum = exact, with the SLQ value beside it), else from SLQ.
        actual_sparsity is one-shot global magnitude pruning of the same model on the 0.1% grid by the official criterion
        (tolerance 0 where no pruned model beats the unpruned one: actual_criterion says which); actual_tol_* at each
        accuracy tolerance. difference = predicted − actual; verdict: agreement within 0.01.

        What it does not show: any seed spread (one training run per point, so neither threshold's spread between
        seeds is measured); anything beyond the listed tasks (in the mini preset two small MLPs on 8×8 digits, not the
        paper's networks); the epochs are the
        task's own at every λ, so a point far from the task's λ need not be at equilibrium (see the drift column).
        """,
        {
            "tasks": [t for t in REGIME_TASKS for _ in REGIME_POINTS],
            "multipliers": [
                float(m) for _ in REGIME_TASKS for m in REGIME.l1_multipliers
            ],
        },
        metrics=regime_files("metrics.json", "train"),
        prediction=regime_files("prediction.json"),
        actual=regime_files("actual.json"),
    ),
    "lomp_vs_sota": table(
        "LOMP vs MP, WF, CBS, CHITA",
        "appendix table: LOMP vs one-shot state of the art",
        "prunelimit.table_inputs:lomp_vs_sota_from_files",
        r"""
        LOMP against the optimal-brain-surgeon family (paper: appendix table "LOMP vs state-of-the-art one-shot
        pruning"): top-1 test accuracy (%) per task and sparsity (fraction of prunable weights removed), one shot with
        no retraining. Every method prunes both trained models of the task: the dense one (as the benchmark of
        "Fast as CHITA" does) and the L1-trained one; magnitude pruning (MP) of the L1 model is LOMP. MP: global
        magnitude pruning; WF: WoodFisher (OBS saliency and update under a damped empirical Fisher of N per-sample
        gradients, block-diagonal, inverted by Woodbury); CBS: greedy swaps on the same quadratic, then the joint
        OBS update; CHITA: iterative hard thresholding with backsolve on the gradient least squares. Cells read
        "mean ± sd (number of training seeds)"; "dense" is the unpruned dense model. The "prune time" row gives
        each column's pruning time in seconds (median over the sparsities), the "gradients" row the shared
        per-sample-gradient time. Where the task is MLPNet on MNIST, "published" columns carry the CBS authors'
        numbers (mean of five runs) for comparison.
        """,
        {
            "methods": list(ONESHOT.methods),
            "starts": ONESHOT_STARTS,
            "model_dataset": {
                t: (config["tasks"][t]["model"], config["tasks"][t]["dataset"])
                for t in ONESHOT_TASKS
            },
        },
        results=ONESHOT_RESULTS,
    ),
}


for _name, _table in TABLES.items():

    rule:
        name:
            f"table_{_name}"
        input:
            **_table["input"],
        output:
            csv=f"{RESULTS}/tables/{_name}.csv",
            md=f"{RESULTS}/tables/{_name}.md",
            tex=f"{RESULTS}/tables/{_name}.tex",
            html=report(
                f"{RESULTS}/tables/{_name}.html",
                caption="../report/table.rst",
                category="Tables",
                labels=_table["labels"],
            ),
        log:
            f"{RESULTS}/logs/tables/{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/tables/{_name}.tsv"
        localrule: True
        conda:
            "../../envs/plot.yaml"
        params:
            **_table["params"],
            entry=_table["entry"],
            caption=_table["caption"],
            title=_table["title"],
        script:
            "../../scripts/table.py"
