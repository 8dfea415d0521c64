"""kernels: Triton (interpreter on CPU) and chunked torch paths vs a float64 reference.

Relative error is norm-wise: max |got - ref| / max |ref| over the tensor (loss or gradient).
Interpreter shapes are tiny and several rows share one program, so the file runs in seconds.
"""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import autograd, torch_path, triton_setup
from kernels.reference import per_token_kl_ref, token_logprobs_ref

# The interpreter evaluates masked-off lanes too (log 0, -inf - -inf); numpy warns, results are unaffected.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
BACKENDS = ["triton", "torch"]
KINDS = [("reverse", 0.5), ("forward", 0.5), ("jsd", 0.3), ("jsd", 0.5)]
# (leading shape, V, forced vocab block, temperature, masked rows): V below one block, V not a
# multiple of the block (multi-block online loop), V an exact multiple, leading dims, default block.
CASES = [
    ((3,), 5, 16, 1.0, None),
    ((5,), 37, 16, 0.7, [1]),
    ((4,), 64, 16, 2.0, None),
    ((2, 3), 20, 8, 1.0, [0, 4]),
    ((6,), 100, None, 1.3, [5]),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine every parallel
    region waits for a core (log_softmax of 2 x 7 took 12 ms instead of 2 us with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_settings():
    yield
    kernels.set_backend("auto")
    triton_setup.BLOCK_V = None
    triton_setup.ROWS_PER_PROGRAM = None


def rel_err(got, ref):
    got, ref = got.double(), ref.double()
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def make_mask(lead, masked_rows):
    if masked_rows is None:
        return None
    mask = torch.ones(math.prod(lead), dtype=torch.bool)
    mask[masked_rows] = False
    return mask.reshape(lead)


def run_and_grad(fn, x, seed=0):
    """Loss of fn(x) and d(loss . w)/dx for a random weight w (so backward's scaling is checked)."""
    x = x.detach().clone().requires_grad_()
    loss = fn(x)
    w = torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (loss * w.to(loss.dtype)).sum().backward()
    return loss.detach(), x.grad


def check_kl(backend, kind, beta, student, teacher, temperature, mask, tol):
    kernels.set_backend(backend)
    loss, grad = run_and_grad(
        lambda s: kernels.per_token_kl(s, teacher, kind, beta, temperature, mask), student)
    ref_loss, ref_grad = run_and_grad(
        lambda s: per_token_kl_ref(s, teacher.double(), kind, beta, temperature, mask), student.double())
    assert loss.dtype == torch.float32 and loss.shape == student.shape[:-1]
    assert grad.dtype == student.dtype
    assert rel_err(loss, ref_loss) <= tol, (rel_err(loss, ref_loss), loss, ref_loss)
    assert rel_err(grad, ref_grad) <= tol, rel_err(grad, ref_grad)
    if mask is not None:
        assert (loss[~mask] == 0).all() and (grad[~mask] == 0).all()
    return loss


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,beta", KINDS)
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("lead,vocab,block,temperature,masked", CASES)
def test_kl_matches_float64_reference(backend, kind, beta, dtype, lead, vocab, block, temperature, masked):
    triton_setup.BLOCK_V = block
    g = torch.Generator().manual_seed(vocab)
    student = (2 * torch.randn(*lead, vocab, generator=g)).to(dtype)
    teacher = (2 * torch.randn(*lead, vocab, generator=g)).to(dtype)
    check_kl(backend, kind, beta, student, teacher, temperature, make_mask(lead, masked), TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("lead,vocab,block,temperature,masked", CASES)
def test_token_logprobs_match_float64_reference(backend, dtype, lead, vocab, block, temperature, masked):
    triton_setup.BLOCK_V = block
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(vocab)
    logits = (3 * torch.randn(*lead, vocab, generator=g)).to(dtype)
    tokens = torch.randint(0, vocab, lead, generator=g)
    tokens.view(-1)[0] = vocab - 1  # the last column, in the last (partial) block
    loss, grad = run_and_grad(lambda x: kernels.token_logprobs(x, tokens, temperature), logits)
    ref_loss, ref_grad = run_and_grad(lambda x: token_logprobs_ref(x, tokens, temperature), logits.double())
    assert loss.dtype == torch.float32 and loss.shape == lead and grad.dtype == dtype
    assert rel_err(loss, ref_loss) <= TOL[dtype]
    assert rel_err(grad, ref_grad) <= TOL[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows_per_program", [1, 2, 4])
def test_rows_per_program_and_strided_inputs(backend, rows_per_program):
    """Row counts that do not fill the last program; a row-strided student view (the gradient
    buffer is contiguous, so its row stride differs), a transposed teacher."""
    triton_setup.BLOCK_V, triton_setup.ROWS_PER_PROGRAM = 8, rows_per_program
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(rows_per_program)
    base = torch.randn(7, 40, generator=g)
    teacher = torch.randn(30, 7, generator=g).t()  # column stride 7
    tokens = torch.randint(0, 30, (7,), generator=g)
    w = torch.randn(7, generator=g)
    losses = {
        "kl": (lambda x: kernels.per_token_kl(x, teacher, "reverse", temperature=0.9),
               lambda x: per_token_kl_ref(x, teacher.double(), "reverse", temperature=0.9)),
        "logprob": (lambda x: kernels.token_logprobs(x, tokens), lambda x: token_logprobs_ref(x, tokens)),
    }
    for ours, ref in losses.values():
        leaf = base.clone().requires_grad_()
        student = leaf[:, 3:33]  # row stride 40
        assert student.stride() == (40, 1)
        loss = ours(student)
        (loss * w).sum().backward()
        ref_leaf = base.double().requires_grad_()
        ref_loss = ref(ref_leaf[:, 3:33])
        (ref_loss * w.double()).sum().backward()
        assert rel_err(loss, ref_loss) <= 1e-5 and rel_err(leaf.grad, ref_leaf.grad) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,beta", KINDS[:3])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_large_logits_and_neg_inf_teacher_entries(backend, kind, beta, temperature):
    """±1e4 logits and -inf teacher entries stay finite wherever the divergence is finite."""
    triton_setup.BLOCK_V = 16
    g = torch.Generator().manual_seed(1)
    student = (torch.rand(4, 40, generator=g) * 2 - 1) * 1e4
    teacher = (torch.rand(4, 40, generator=g) * 2 - 1) * 1e4
    teacher[:, ::3] = -math.inf
    teacher[1, 5:] = -math.inf  # nearly all of a row
    if kind == "reverse":  # finite only where the student has no mass on the teacher's zeros
        student[teacher == -math.inf] = -math.inf
    loss = check_kl(backend, kind, beta, student, teacher, temperature, make_mask((4,), [2]), 1e-5)
    assert torch.isfinite(loss).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_reverse_kl_with_offset_teacher_does_not_cancel(backend, temperature):
    """teacher = student + 5e3 + noise: KL ~ 1 while E_p[s - t] and LSE(s) - LSE(t) are each ~5e3,
    so computing KL as their difference would lose ~5e3 x 6e-8 = 3e-4 (the one-pass Triton loss
    keeps its terms relative to the running maxima).  Row maxima sit in the last block, so every
    block rescales the running sums.  Loss only: at T = 0.6 the gradient is ~3e-3 where p ~ 1,
    a near-cancelling p (log p - log q - KL), and fp32 gives it ~2e-5 relative error (any backend)."""
    triton_setup.BLOCK_V = 16
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(14)
    student = 3 * torch.randn(4, 70, generator=g)
    student[:, -1] = 12.0
    teacher = student + 5e3 + 2 * torch.randn(4, 70, generator=g)
    teacher[:, -2] = 5e3 + 15.0
    loss = kernels.per_token_kl(student, teacher, "reverse", temperature=temperature)
    ref = per_token_kl_ref(student.double(), teacher.double(), "reverse", temperature=temperature)
    assert ref.min() > 1 and rel_err(loss, ref) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_reverse_kl_is_inf_where_teacher_has_no_mass(backend):
    kernels.set_backend(backend)
    student, teacher = torch.zeros(2, 9), torch.zeros(2, 9)
    teacher[0, 4] = -math.inf
    loss = kernels.per_token_kl(student, teacher, "reverse")
    assert loss[0] == math.inf and torch.isfinite(loss[1]) and loss[1].abs() < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_rows_are_not_read(backend):
    """NaN garbage in masked rows does not leak into loss or gradient."""
    triton_setup.BLOCK_V = 8
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(3, 20, generator=g), torch.randn(3, 20, generator=g)
    mask = torch.tensor([1, 0, 1])  # integer masks are accepted
    ref_loss, ref_grad = run_and_grad(
        lambda s: per_token_kl_ref(s, teacher.double(), "jsd", 0.4, mask=mask), student.double())
    student[1] = math.nan
    teacher[1] = math.nan
    kernels.set_backend(backend)
    loss, grad = run_and_grad(lambda s: kernels.per_token_kl(s, teacher, "jsd", 0.4, mask=mask), student)
    assert loss[1] == 0 and (grad[1] == 0).all()
    assert rel_err(loss, ref_loss) <= 1e-5 and rel_err(grad, ref_grad) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_jsd_beta_limits_are_forward_and_reverse_kl(backend):
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(3, 11, generator=g), torch.randn(3, 11, generator=g)
    torch.testing.assert_close(kernels.per_token_kl(s, t, "jsd", 0.0), kernels.per_token_kl(s, t, "forward"))
    torch.testing.assert_close(kernels.per_token_kl(s, t, "jsd", 1.0), kernels.per_token_kl(s, t, "reverse"))
    # JSD is symmetric under (student, teacher, beta) -> (teacher, student, 1 - beta), and bounded by log 2 at 1/2.
    torch.testing.assert_close(kernels.per_token_kl(s, t, "jsd", 0.3), kernels.per_token_kl(t, s, "jsd", 0.7))
    assert (kernels.per_token_kl(s, t, "jsd", 0.5) <= math.log(2)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_without_grad_equals_loss_with_grad(backend):
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(4, 30, generator=g), torch.randn(4, 30, generator=g)
    for kind in ("reverse", "forward", "jsd"):
        with_grad = kernels.per_token_kl(s.clone().requires_grad_(), t, kind)
        with torch.no_grad():
            without = kernels.per_token_kl(s, t, kind)
        torch.testing.assert_close(with_grad.detach(), without)


def test_backward_twice_raises_clearly():
    s = torch.randn(2, 6, requires_grad=True)
    loss = kernels.per_token_kl(s, torch.randn(2, 6)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already used"):
        loss.backward()


# In-place mode: (name, our loss of x, float64 reference loss of x) for each op.
def inplace_ops(teacher, tokens, mask, temperature):
    t64 = teacher.double()
    return [
        *[(f"{kind}{beta}",
           lambda x, inplace, kind=kind, beta=beta: kernels.per_token_kl(x, teacher, kind, beta, temperature, mask, inplace=inplace),
           lambda x, kind=kind, beta=beta: per_token_kl_ref(x, t64, kind, beta, temperature, mask))
          for kind, beta in KINDS[:3]],
        ("logprob", lambda x, inplace: kernels.token_logprobs(x, tokens, temperature, inplace=inplace),
         lambda x: token_logprobs_ref(x, tokens, temperature)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("lead,vocab,block,temperature,masked", CASES[1:4])
def test_inplace_matches_float64_reference(backend, dtype, lead, vocab, block, temperature, masked):
    """inplace=True: the logits' storage holds the unscaled gradient right after the forward, the
    loss and the (grad_output-scaled) gradient reaching the upstream leaf match the reference."""
    triton_setup.BLOCK_V = block
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(vocab)
    base = (2 * torch.randn(*lead, vocab, generator=g)).to(dtype)
    teacher = (2 * torch.randn(*lead, vocab, generator=g)).to(dtype)
    tokens = torch.randint(0, vocab, lead, generator=g)
    mask = make_mask(lead, masked)
    w = torch.randn(lead, generator=g, dtype=torch.float64)
    for name, ours, ref in inplace_ops(teacher, tokens, mask, temperature):
        leaf = base.clone().requires_grad_()
        logits = leaf.clone()  # a fresh non-leaf, like an lm_head output
        loss = ours(logits, True)
        ref_leaf = base.double().requires_grad_()
        ref_loss = ref(ref_leaf)
        ref_unscaled = torch.autograd.grad(ref_loss.sum(), ref_leaf, retain_graph=True)[0]
        assert rel_err(logits.detach(), ref_unscaled) <= TOL[dtype], name  # the gradient is in place
        (loss * w.float()).sum().backward()
        (ref_loss * w).sum().backward()
        assert leaf.grad.dtype == dtype, name
        assert rel_err(loss.detach(), ref_loss) <= TOL[dtype], name
        assert rel_err(leaf.grad, ref_leaf.grad) <= TOL[dtype], name
        if mask is not None and name != "logprob":  # token_logprobs has no mask
            assert (loss[~mask] == 0).all() and (leaf.grad[~mask] == 0).all(), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_gradient_reaches_lm_head_parameters(backend):
    """logits = hidden @ W.T ([B, T, V], a view once flattened): the gradients on W and on hidden
    equal the float64 reference, and equal the out-of-place path's."""
    triton_setup.BLOCK_V, triton_setup.ROWS_PER_PROGRAM = 16, 4
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(11)
    hidden0, weight0 = torch.randn(2, 3, 8, generator=g), torch.randn(37, 8, generator=g)
    teacher = 2 * torch.randn(2, 3, 37, generator=g)
    tokens = torch.randint(0, 37, (2, 3), generator=g)
    mask = make_mask((2, 3), [4])
    w = torch.randn(2, 3, generator=g, dtype=torch.float64)

    def grads(loss_fn, dtype):
        hidden = hidden0.to(dtype, copy=True).requires_grad_()
        weight = weight0.to(dtype, copy=True).requires_grad_()
        loss = loss_fn(hidden @ weight.T)
        (loss * w.to(loss.dtype)).sum().backward()
        return loss.detach(), weight.grad, hidden.grad

    for name, ours, ref in inplace_ops(teacher, tokens, mask, 0.8):
        got = grads(lambda x: ours(x, True), torch.float32)
        out_of_place = grads(lambda x: ours(x, False), torch.float32)
        want = grads(ref, torch.float64)
        for a, b, c in zip(got, out_of_place, want):
            assert rel_err(a, c) <= 1e-5, name
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # same kernel, same numbers


def test_inplace_refuses_unsafe_logits():
    kernels.set_backend("torch")
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    leaf = s.clone().requires_grad_()
    cases = [
        (leaf, t, "a leaf tensor that requires grad"),
        (leaf.view(2, 2, 10), t.view(2, 2, 10), "a leaf tensor that requires grad"),  # a view of a leaf
        ((leaf * 1).t().contiguous().t(), t, "needs a contiguous student_logits"),
    ]
    shared = leaf * 1
    cases.append((shared, shared.detach(), "not to share storage with the teacher"))
    for student, teacher, message in cases:
        with pytest.raises(ValueError, match=message):
            kernels.per_token_kl(student, teacher, inplace=True)
    with pytest.raises(ValueError, match="a leaf tensor that requires grad"):
        kernels.token_logprobs(leaf, torch.zeros(4, dtype=torch.long), inplace=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_is_caught_by_autograd_version_checks(backend):
    """An upstream op that saved the logits for its backward (exp saves its output) raises instead
    of differentiating through the gradient; so does a write to the logits before backward."""
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(12)
    x, t = torch.randn(3, 9, generator=g, requires_grad=True), torch.randn(3, 9, generator=g)
    loss = kernels.per_token_kl(x.exp(), t, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.sum().backward()
    logits = x * 2
    loss = kernels.token_logprobs(logits, torch.zeros(3, dtype=torch.long), inplace=True)
    logits.add_(1)
    with pytest.raises(RuntimeError, match="modified before backward"):
        loss.sum().backward()


def test_inplace_bumps_version_after_raw_pointer_writes():
    """A GPU kernel writes through a raw pointer, which autograd cannot see (the interpreter's
    copy-back can): `autograd.apply` must bump the version counter itself, so that a node that
    saved the logits before the call and runs its backward first raises instead of reading the
    gradient as logits.  (Nodes that run after ours already see backward's in-place scaling.)"""
    def raw_write(x, want_grad, grad_out):
        grad_out.detach().numpy()[:] = 2.0  # d(2 x.sum(-1))/dx, written behind autograd's back
        return 2 * x.detach().sum(-1), grad_out

    x, y = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    logits = x * 1
    side = (logits * y).sum()  # saves logits to differentiate w.r.t. y
    loss = autograd.apply(raw_write, logits, into_input=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        side.backward()
    loss.sum().backward()
    assert torch.equal(x.grad, torch.full((3, 4), 2.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_without_grad_leaves_logits_intact(backend):
    kernels.set_backend(backend)
    g = torch.Generator().manual_seed(13)
    x, t = torch.randn(3, 9, generator=g), torch.randn(3, 9, generator=g)
    want = kernels.per_token_kl(x, t)
    logits = x.clone()
    assert torch.equal(kernels.per_token_kl(logits, t, inplace=True), want) and torch.equal(logits, x)
    logits = x.clone().requires_grad_() * 1
    with torch.no_grad():
        assert torch.equal(kernels.per_token_kl(logits, t, inplace=True), want)
    assert torch.equal(logits.detach(), x)


@pytest.mark.parametrize("kind,beta", KINDS[:3])
@pytest.mark.parametrize("masked", [None, [1]])
def test_torch_path_gradcheck_float64(monkeypatch, kind, beta, masked):
    monkeypatch.setattr(torch_path, "CHUNK_ROWS", 2)  # several chunks
    g = torch.Generator().manual_seed(6)
    s = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mask = make_mask((5,), masked)
    fn = lambda x: autograd.apply(torch_path.per_token_kl, x, t, kind, beta, 0.8, mask, scale_in_place=False)
    assert torch.autograd.gradcheck(fn, (s,))
    tokens = torch.randint(0, 7, (5,), generator=g)
    fn = lambda x: autograd.apply(torch_path.token_logprobs, x, tokens, 1.7, scale_in_place=False)
    assert torch.autograd.gradcheck(fn, (s,))


def test_torch_path_matches_torch_functional(monkeypatch):
    """Same inputs through F.log_softmax / F.kl_div (+ autograd) and through the torch path."""
    monkeypatch.setattr(torch_path, "CHUNK_ROWS", 3)
    kernels.set_backend("torch")
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(2, 5, 33, generator=g), torch.randn(2, 5, 33, generator=g)
    tokens = torch.randint(0, 33, (2, 5), generator=g)
    logp, logq = (lambda x: F.log_softmax(x, -1)), F.log_softmax(t, -1)
    cases = [
        (lambda x: kernels.per_token_kl(x, t, "forward"),
         lambda x: F.kl_div(logp(x), logq, reduction="none", log_target=True).sum(-1)),
        (lambda x: kernels.per_token_kl(x, t, "reverse"),
         lambda x: F.kl_div(logq, logp(x), reduction="none", log_target=True).sum(-1)),
        (lambda x: kernels.token_logprobs(x, tokens),
         lambda x: logp(x).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)),
    ]
    for ours, theirs in cases:
        (a, ga), (b, gb) = run_and_grad(ours, s), run_and_grad(theirs, s)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_value_error_before_launch(monkeypatch, backend):
    kernels.set_backend(backend)

    def no_launch(*args, **kwargs):
        raise AssertionError("a kernel ran before validation")

    monkeypatch.setattr(kernels.dispatch, "_kl_impl", lambda device: no_launch)
    monkeypatch.setattr(kernels.dispatch, "_logprob_impl", lambda device: no_launch)
    s, t = torch.randn(2, 3, 10), torch.randn(2, 3, 10)
    bad_kl = [
        (dict(teacher_logits=torch.randn(2, 3, 11)), r"teacher_logits must have the student's shape \(2, 3, 10\)"),
        (dict(student_logits=torch.ones(2, 3, 10, dtype=torch.long)), "student_logits must be a floating tensor"),
        (dict(teacher_logits=torch.ones(2, 3, 10, dtype=torch.int32)), "teacher_logits must be a floating tensor"),
        (dict(kind="kl"), "kind must be 'reverse', 'forward' or 'jsd'"),
        (dict(kind="jsd", beta=1.5), r"beta must be in \[0, 1\]"),
        (dict(temperature=0.0), "temperature must be a finite number > 0"),
        (dict(mask=torch.ones(6, dtype=torch.bool)), r"mask must be a tensor of shape \(2, 3\)"),
    ]
    for override, message in bad_kl:
        args = dict(student_logits=s, teacher_logits=t) | override
        with pytest.raises(ValueError, match=message):
            kernels.per_token_kl(**args)
    bad_lp = [
        (dict(tokens=torch.full((2, 3), 10)), r"tokens must be in \[0, 10\)"),
        (dict(tokens=torch.full((2, 3), -1)), r"tokens must be in \[0, 10\)"),
        (dict(tokens=torch.zeros(3, 2, dtype=torch.long)), r"tokens must have shape \(2, 3\)"),
        (dict(tokens=torch.zeros(2, 3)), "tokens must be an integer tensor"),
        (dict(logits=torch.ones(2, 3, 10, dtype=torch.int64)), "logits must be a floating tensor"),
    ]
    for override, message in bad_lp:
        args = dict(logits=s, tokens=torch.zeros(2, 3, dtype=torch.long)) | override
        with pytest.raises(ValueError, match=message):
            kernels.token_logprobs(**args)
    with pytest.raises(ValueError, match="backend must be one of"):
        kernels.set_backend("cuda")


def test_import_without_triton_and_clear_error():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, kernels\n"
        "x = torch.randn(2, 5)\n"
        "assert kernels.per_token_kl(x, x).abs().max() < 1e-6  # CPU -> torch path\n"
        "kernels.set_backend('triton')\n"
        "try:\n"
        "    kernels.per_token_kl(x, x)\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "needs the `triton` package" in out.stdout
