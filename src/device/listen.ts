/**
 * What every backend's listen() does with each event it reads: let `answer` reply, report the
 * event, and stop once `count` events were seen. The backends differ only in how they wait for
 * and read events.
 */
import type {IotlbEvent, ListenOptions, ListenResult} from './device.js'

export class ListenTally {
  private events = 0
  private answered = 0

  constructor(private readonly options: ListenOptions) {}

  /** Answers and reports one event; true when `count` is reached and listening must stop. */
  async deliver(event: IotlbEvent): Promise<boolean> {
    this.events += 1
    const answer = this.options.answer ? await this.options.answer(event) : undefined
    if (answer) this.answered += 1
    await this.options.onEvent(event, answer)
    return this.options.count !== undefined && this.events >= this.options.count
  }

  result(stopped: ListenResult['stopped']): ListenResult {
    return {events: this.events, answered: this.answered, stopped}
  }
}
