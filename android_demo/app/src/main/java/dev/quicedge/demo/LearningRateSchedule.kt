package dev.quicedge.demo

/**
 * The learning rate of each step of a training run, as a multiplier of the bundle's rate: what
 * quic_edge.bench.common.step_schedule gives the Python device loop (runtimes/loop.py, linear_schedule).
 * LINEAR, the recipe `make demo` and `bench compare` train with: a warm-up over the first 6 % of the run's
 * steps, then a linear decay to 0. CONSTANT: the bundle's rate throughout.
 */
object LearningRateSchedule {
    const val CONSTANT = "constant"
    const val LINEAR = "linear"
    val NAMES = listOf(CONSTANT, LINEAR)
    private const val WARMUP_SHARE = 0.06

    /** Throws IllegalArgumentException, naming the schedules there are, for a name that is not one of them. */
    fun check(name: String) {
        require(name in NAMES) { "learning-rate schedule '$name' is not one of ${NAMES.joinToString(", ")}" }
    }

    /** The multiplier of step `step` (0-based, counted within the run) of a run of `total` steps. */
    fun multiplier(name: String, step: Int, total: Int): Double {
        check(name)
        if (name == CONSTANT) return 1.0
        // Math.rint rounds half to even, as Python's round() does
        val warmup = maxOf(1, Math.rint(WARMUP_SHARE * total).toInt())
        if (step < warmup) return (step + 1).toDouble() / warmup
        return maxOf(0.0, (total - step).toDouble() / maxOf(1, total - warmup))
    }
}
