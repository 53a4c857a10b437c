// Card payments in the page with Stripe.js. The server creates the PaymentIntent (checkout answers with its
// `client_secret`; a repeated checkout answers with the same one, so a reload can resume), this module mounts
// Stripe's Payment Element with it and confirms the payment with `stripe.confirmPayment`. Confirming in the
// browser only hands the card to Stripe: the server confirms the lesson or package from Stripe's webhook,
// never from this page, and the page learns of it from the user channel's push (`booking`, `package`).
//
// Stripe.js is loaded from https://js.stripe.com/v3/ only when a card payment is about to be shown, and only
// when the server's client config (`GET /client-config`) says payments go through Stripe and names the
// publishable key. When it can't load (no connection, a blocker), the form says so in a sentence.

import { describe } from '../api';
import { el, money } from '../dom';
import type { ClientConfig, Payment } from './model';

// --- the slice of Stripe.js this page uses ---

interface StripeError {
  type?: string;
  code?: string;
  message?: string;
}
interface StripeElement {
  mount(target: HTMLElement): void;
  destroy(): void;
  on(event: 'ready' | 'loaderror', handler: (e: { error?: StripeError }) => void): void;
}
interface StripeElements {
  create(type: 'payment', options?: Record<string, unknown>): StripeElement;
}
interface StripeClient {
  elements(options: { clientSecret: string; appearance?: Record<string, unknown> }): StripeElements;
  confirmPayment(options: {
    elements: StripeElements;
    redirect: 'if_required';
    confirmParams: { return_url: string };
  }): Promise<{ error?: StripeError; paymentIntent?: { id: string; status: string } }>;
}
type StripeFactory = (publishableKey: string) => StripeClient;

const STRIPE_JS = 'https://js.stripe.com/v3/';
/** How long the script may take before the form says it couldn't load (a dead network may never answer). */
const LOAD_TIMEOUT_MS = 15_000;

/** After this long without the confirmation's push, the waiting message says what to do. */
const SLOW_CONFIRMATION_MS = 60_000;

/** The sentence for a Stripe.js that didn't load. */
const STRIPE_UNAVAILABLE =
  'The card form couldn’t load; check your connection (or allow js.stripe.com if a blocker is on) and try again. Nothing has been charged.';

let loading: Promise<StripeFactory> | null = null;

/** Loads Stripe.js once per page load; a failed load is forgotten, so "Try again" loads it afresh. */
function loadStripe(): Promise<StripeFactory> {
  loading ??= new Promise<StripeFactory>((resolve, reject) => {
    const found = (window as unknown as { Stripe?: StripeFactory }).Stripe;
    if (found) return resolve(found);
    const script = el('script', { src: STRIPE_JS, async: '', 'data-stripe-js': '' });
    const fail = () => {
      clearTimeout(timer);
      script.remove();
      loading = null;
      reject(new Error(STRIPE_UNAVAILABLE));
    };
    const timer = window.setTimeout(fail, LOAD_TIMEOUT_MS);
    script.onerror = fail;
    script.onload = () => {
      clearTimeout(timer);
      const Stripe = (window as unknown as { Stripe?: StripeFactory }).Stripe;
      if (Stripe) resolve(Stripe);
      else fail();
    };
    document.head.append(script);
  });
  return loading;
}

/** Whether this server takes card payments in the page (Stripe, with a publishable key). */
export function cardPayments(config: ClientConfig | null): config is ClientConfig & { stripe_publishable_key: string } {
  return config?.payments === 'stripe' && Boolean(config.stripe_publishable_key);
}

/** What Stripe said went wrong, as a sentence (Stripe's own messages are written for the payer). */
function stripeSentence(e: StripeError): string {
  if (e.type === 'card_error' || e.type === 'validation_error')
    return e.message ?? 'The card was not accepted. Check the details or use another card.';
  return `Stripe couldn’t take the payment${e.message ? `: ${e.message.replace(/\.$/, '')}` : ''}. Please try again.`;
}

/** What Stripe adds to the return URL when the payer comes back from their bank's page. */
const RETURN_PARAMS = ['payment_intent', 'payment_intent_client_secret', 'redirect_status'];

/**
 * Stripe's `redirect_status` when the payer comes back from their bank to this page for this payment, then
 * taken out of the address. Stripe adds its parameters to the query; with our hash routes they may land in the
 * hash's query instead, so both are read.
 */
function returnedFrom(payment: Payment): string | null {
  const cut = location.hash.indexOf('?');
  const hashPath = cut < 0 ? location.hash : location.hash.slice(0, cut);
  const search = new URLSearchParams(location.search);
  const inHash = new URLSearchParams(cut < 0 ? '' : location.hash.slice(cut + 1));
  const q = search.has('redirect_status') ? search : inHash.has('redirect_status') ? inHash : null;
  if (!q || !payment.provider_ref || q.get('payment_intent') !== payment.provider_ref) return null;
  const status = q.get('redirect_status');
  for (const k of RETURN_PARAMS) {
    search.delete(k);
    inHash.delete(k);
  }
  const [s, h] = [search.toString(), inHash.toString()];
  history.replaceState(history.state, '', `${location.pathname}${s ? `?${s}` : ''}${hashPath}${h ? `?${h}` : ''}`);
  return status;
}

export interface CardPaymentOptions {
  config: ClientConfig | null;
  /** The pending payment (with its `client_secret` when checkout just answered). */
  payment: Payment;
  /** `lesson` or `package`: the words of the waiting message. */
  what: 'lesson' | 'package';
  /**
   * Asks the server for the payment's client secret again (a repeated checkout: the same PaymentIntent, or a
   * new payment after a decline the server already recorded). Absent: the form can't resume.
   */
  resume?: () => Promise<Payment | null>;
  /** Stripe took the payment (the confirmation is on its way): e.g. stop offering to release the time. */
  onSent?: () => void;
}

/**
 * The card form: Stripe's Payment Element for the pending payment, a Pay button, and what happens, in
 * sentences. After Stripe accepts the card it says that the school's confirmation is on its way; the page
 * shows that confirmation when the push arrives. `data-state` on the returned element: `loading`, `ready`,
 * `paying`, `sent`, `failed` (Stripe.js or the payment couldn't be started), `declined`.
 */
export function cardPayment(opts: CardPaymentOptions): HTMLElement {
  let payment = opts.payment;
  const amount = money(payment.amount_minor, payment.currency);
  const mount = el('div', { class: 'stripe-mount', id: 'payment-element' });
  const status = el('p', { class: 'muted', role: 'status' });
  const error = el('p', { class: 'inline-error', role: 'alert' });
  error.hidden = true;
  const intro = el(
    'p',
    {},
    `Pay `,
    el('strong', {}, amount),
    ' by card. Your card details go straight to Stripe, our payment provider; the school never sees them.',
  );
  const pay = el('button', { type: 'button', class: 'primary', 'data-pay': 'stripe', disabled: '' }, `Pay ${amount}`);
  const retry = el('button', { type: 'button', 'data-retry': '' }, 'Try again');
  retry.hidden = true;
  const box = el(
    'div',
    { class: 'payment stripe', 'data-provider': payment.provider, 'data-payment': payment.id, 'data-state': 'loading' },
    intro,
    mount,
    error,
    status,
    el('div', { class: 'actions' }, pay, retry),
  );
  const state = (s: string) => (box.dataset.state = s);
  const fail = (s: 'failed' | 'declined', text: string) => {
    state(s);
    retry.textContent = s === 'declined' && opts.resume ? 'Try again with another card' : 'Try again';
    status.textContent = '';
    error.textContent = text;
    error.hidden = false;
    retry.hidden = false;
    pay.disabled = true;
    pay.hidden = true;
  };
  const sent = (text: string, done = 'Paid') => {
    state('sent');
    element?.destroy();
    element = null;
    mount.replaceChildren();
    pay.hidden = true;
    retry.hidden = true;
    error.hidden = true;
    intro.replaceChildren(`${done} `, el('strong', {}, amount), ' by card.');
    status.classList.remove('muted');
    status.textContent = text;
    opts.onSent?.();
    // The push normally comes within seconds; if it doesn't, say what to do rather than wait in silence.
    window.setTimeout(() => {
      if (box.isConnected && box.dataset.state === 'sent')
        status.textContent = `${text} It is taking longer than usual: if nothing changes within a few minutes, please contact the school. You won’t be charged twice.`;
    }, SLOW_CONFIRMATION_MS);
  };
  const waiting =
    opts.what === 'lesson'
      ? 'Stripe has your payment. The lesson is confirmed as soon as Stripe tells the school, usually within seconds: this page updates by itself.'
      : 'Stripe has your payment. The package becomes active as soon as Stripe tells the school, usually within seconds: this page updates by itself.';

  let stripe: StripeClient | null = null;
  let elements: StripeElements | null = null;
  let element: StripeElement | null = null;

  const start = async (fresh: boolean) => {
    state('loading');
    error.hidden = true;
    retry.hidden = true;
    pay.disabled = true;
    pay.hidden = false;
    if (!cardPayments(opts.config)) {
      fail(
        'failed',
        'Card payments can’t be taken in this page: the school hasn’t finished setting up its card payments. Please contact the school.',
      );
      retry.hidden = true;
      return;
    }
    const key = opts.config.stripe_publishable_key;
    status.textContent = 'Loading the secure card form…';
    try {
      const Stripe = await loadStripe();
      stripe ??= Stripe(key);
      if ((fresh || !payment.client_secret) && opts.resume) {
        status.textContent = 'Getting your payment ready…';
        const again = await opts.resume();
        if (!again) return; // nothing left to pay (the page shows why)
        payment = again;
        box.dataset.payment = payment.id;
      }
      if (!payment.client_secret)
        throw new Error(
          'This card payment can’t be resumed in this page. Please contact the school, who can see the payment.',
        );
      element?.destroy();
      mount.replaceChildren();
      elements = stripe.elements({ clientSecret: payment.client_secret, appearance: { theme: 'stripe' } });
      element = elements.create('payment', { layout: 'tabs' });
      element.on('ready', () => {
        state('ready');
        status.textContent = 'Enter your card details, then pay.';
        pay.disabled = false;
      });
      element.on('loaderror', (e) => fail('failed', e.error ? stripeSentence(e.error) : STRIPE_UNAVAILABLE));
      element.mount(mount);
    } catch (e) {
      fail('failed', describe(e));
    }
  };

  pay.onclick = async () => {
    if (!stripe || !elements || pay.disabled) return;
    state('paying');
    pay.disabled = true;
    error.hidden = true;
    status.textContent = 'Sending your payment to Stripe…';
    try {
      const r = await stripe.confirmPayment({
        elements,
        // A payment method that needs the bank's own page comes back here (`redirect_status` in the query).
        redirect: 'if_required',
        confirmParams: { return_url: location.href },
      });
      if (r.error) {
        if (r.error.type === 'validation_error') {
          // The form marks the field; the payer corrects it and pays again.
          state('ready');
          status.textContent = '';
          error.textContent = stripeSentence(r.error);
          error.hidden = false;
          pay.disabled = false;
          return;
        }
        fail('declined', stripeSentence(r.error));
        return;
      }
      const s = r.paymentIntent?.status;
      if (s === 'succeeded' || s === 'requires_capture') sent(waiting);
      else if (s === 'processing') sent(waiting, 'Sent');
      else fail('declined', 'The payment wasn’t completed. Please try again.');
    } catch (e) {
      fail('declined', describe(e));
    }
  };
  // After a decline, a fresh start asks the server again: after the decline is recorded there, that is a new
  // payment. Without `resume` (a package), the same form takes another card.
  retry.onclick = () => {
    if (box.dataset.state === 'declined' && !opts.resume && elements) {
      state('ready');
      error.hidden = true;
      retry.hidden = true;
      pay.disabled = false;
      pay.hidden = false;
      status.textContent = 'Enter your card details, then pay.';
      return;
    }
    void start(box.dataset.state === 'declined');
  };

  const back = returnedFrom(payment);
  if (back === 'succeeded') sent(waiting);
  else if (back === 'processing') sent(waiting, 'Sent');
  else {
    void start(back === 'failed');
    if (back === 'failed') {
      // Back from the bank without its approval: said until the form is used again.
      error.textContent = 'Your bank didn’t approve the payment. Please try again, or use another card.';
      error.hidden = false;
    }
  }
  return box;
}
