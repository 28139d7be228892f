# The paper's figures, and the tables of the theory, pruning and Hessian stages, each its own target
# (the training, baseline and regime-map tables are beside their stages' rules).


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


rule table_bounds_gap:
    input:
        prediction=PREDICTIONS,
    output:
        **table_outputs("bounds_gap"),
    log:
        f"{RESULTS}/logs/tables/bounds_gap.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/bounds_gap.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
        title=table_title("bounds_gap"),
    script:
        "../../scripts/table_bounds_gap.py"


rule table_theory_vs_actual:
    input:
        prediction=claim_files("prediction.json"),
        actual=claim_files("actual.json"),
        metrics=claim_files("metrics.json"),
    output:
        **table_outputs("theory_vs_actual"),
    log:
        f"{RESULTS}/logs/tables/theory_vs_actual.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/theory_vs_actual.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        **claim_seed_params(),
        title=table_title("theory_vs_actual"),
    script:
        "../../scripts/table_theory_vs_actual.py"


rule table_slq:
    input:
        slq=SPECTRA,
    output:
        **table_outputs("slq"),
    log:
        f"{RESULTS}/logs/tables/slq.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/slq.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        **SLQ_SETTINGS,
        tasks=TASKS,
        title=table_title("slq"),
    script:
        "../../scripts/table_slq.py"
