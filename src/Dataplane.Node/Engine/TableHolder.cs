namespace Dataplane.Engine;

/// <summary>
/// The one mutable reference the control plane and the loops share. The control plane publishes a
/// whole new <see cref="SubnetTable"/>; a loop reads <see cref="Current"/> once per batch.
/// </summary>
internal sealed class TableHolder(SubnetTable initial)
{
    private SubnetTable _current = initial;

    public SubnetTable Current => Volatile.Read(ref _current);

    public void Publish(SubnetTable table) => Volatile.Write(ref _current, table);
}
