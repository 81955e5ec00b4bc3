"""One optimisation step: loss, gradients, all-reduce, loss scaling, clipping, update.

A step whose gradients hold inf or NaN (an fp16 overflow, or a diverged batch), or whose
global gradient norm overflows float32, leaves the weights and the optimizer untouched and
is reported as skipped; with dynamic loss scaling
the scale is then halved, and doubled again after ``scale_window`` clean steps.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.communication import get_group_size

SCALE_WINDOW = 1000


class TrainStep(nn.Cell):
    """(features (N, T, F), labels (N,)) -> (loss, correct count, skipped flag, loss scale, gradient norm).

    The gradient norm is the global L2 norm of the (unscaled, averaged) gradients before clipping.

    ``loss_net`` returns (loss, correct). ``loss_scale`` > 1 enables dynamic loss
    scaling; ``grad_clip`` > 0 clips the global gradient norm; ``distributed`` averages
    gradients over all devices before the update.
    """

    def __init__(self, loss_net, optimizer, grad_clip=0.0, loss_scale=1.0, distributed=False):
        super().__init__(auto_prefix=False)
        self.loss_net = loss_net
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.grad_clip = grad_clip
        self.dynamic_scale = loss_scale > 1.0
        self.scale_sense = Parameter(Tensor(loss_scale, ms.float32), name="scale_sense", requires_grad=False)
        self.clean_steps = Parameter(Tensor(0, ms.int32), name="clean_steps", requires_grad=False)
        self.distributed = distributed
        if distributed:
            self.reducer = nn.DistributedGradReducer(self.weights, mean=True, degree=get_group_size())

    @staticmethod
    def _global_norm(grads):
        """L2 norm of all gradients together; inf or NaN if any entry is.

        Each gradient is summed as a 2-D view: MindSpore's CPU reduction of 4-D
        weight-shaped tensors is much slower.
        """
        squares = []
        for grad in grads:
            rows = grad.reshape(grad.shape[0], -1)
            squares.append((rows * rows).sum(1).sum())
        return ops.sqrt(ops.stack(squares).sum())

    def _update_scale(self, finite):
        grown = ops.select(self.clean_steps + 1 >= SCALE_WINDOW, self.scale_sense * 2.0, self.scale_sense)
        new_scale = ops.select(finite, grown, ops.maximum(self.scale_sense * 0.5, 1.0))
        new_clean = ops.select(finite & (self.clean_steps + 1 < SCALE_WINDOW), self.clean_steps + 1,
                               ops.zeros_like(self.clean_steps))
        ops.assign(self.scale_sense, new_scale)
        ops.assign(self.clean_steps, new_clean)

    def construct(self, features, labels):
        loss, correct = self.loss_net(features, labels)
        scale = self.scale_sense
        grads = self.grad(self.loss_net, self.weights)(features, labels,
                                                        (scale.astype(loss.dtype), ops.zeros_like(correct)))
        if self.distributed:
            grads = self.reducer(grads)
        if self.dynamic_scale:
            grads = tuple(grad / scale.astype(grad.dtype) for grad in grads)
        norm = self._global_norm(grads)
        finite = ops.isfinite(norm)
        if self.grad_clip > 0:
            grads = tuple(grad * (self.grad_clip / ops.maximum(norm, self.grad_clip)) for grad in grads)
        if finite:
            self.optimizer(grads)
        if self.dynamic_scale:
            self._update_scale(finite)
        return loss, correct, ops.logical_not(finite), scale, norm
