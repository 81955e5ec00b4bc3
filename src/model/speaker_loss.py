"""The training objective: embedding network, margin head and cross entropy in one cell."""
import mindspore as ms
from mindspore import nn, ops


class SpeakerLoss(nn.Cell):
    """Embedding network + margin head + cross entropy: (features, labels) -> (loss, correct count).

    ``correct`` counts samples whose nearest class centre (plain cosine) is their label.
    """

    def __init__(self, embedding_network, head):
        super().__init__()
        self.embedding_network = embedding_network
        self.head = head
        self.cross_entropy = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def construct(self, features, labels):
        logits, cosine = self.head(self.embedding_network(features), labels)
        loss = self.cross_entropy(logits.astype(ms.float32), labels)
        correct = (ops.argmax(cosine, dim=1) == labels).astype(ms.float32).sum()
        return loss, correct
